#!/usr/bin/env python3
"""The dashboard's benchmarks, standard library only (scripts/bench_dashboard.sh runs them).

  bench_dashboard.py views URL REPORT_HTML   # request timings, first view and page weight
  bench_dashboard.py tabs URL N              # N emulated open tabs until SIGTERM

`views` times, on a dashboard at URL (a finished state dir, served by `coordinator dashboard`):
  - each API call a view makes, over many requests on one keep-alive connection (p50, p95, max),
    the trial table over every sort column, filters and pages;
  - in headless Chromium (chromedriver; skipped without it), the first view: from navigation to
    the overview's cards drawn, and the page weight (every byte the browser received); the same
    for the static HTML report (REPORT_HTML, opened from the disk: load event, bytes).

`tabs` behaves as N open browser tabs would: each holds the live stream (`/api/events`) and
refetches what its view shows when a `summary` event says the store changed, at most every 2 s
(the pages' throttle): two overview tabs, two trial-table tabs, one trial page.
"""

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse


def connection(url):
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)


def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return body


def timed(conn, path, runs):
    times, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        size = len(get(conn, path))
        times.append(time.perf_counter() - start)
    return times, size


def summary(label, times, size=None):
    times = sorted(times)
    p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
    extra = f"  {size / 1024:7.1f} KiB" if size is not None else ""
    print(f"  {label:<46} n={len(times):<4} p50 {1000 * statistics.median(times):7.1f} ms"
          f"  p95 {1000 * p95:7.1f} ms  max {1000 * times[-1]:7.1f} ms{extra}")


def views(url, report_html):
    conn = connection(url)
    first = json.loads(get(conn, "/api/trials?size=1"))
    trial = first["rows"][0]["id"]
    print(f"dashboard at {url}: {first['total']} trials")
    print("API, one keep-alive connection (the first request of each path included):")
    for label, path, runs in [
        ("/api/summary (overview)", "/api/summary", 50),
        ("/api/trials/ID (trial page)", f"/api/trials/{trial}", 50),
        ("/api/trials/ID/series (trial page)", f"/api/trials/{trial}/series", 50),
        ("/api/grid (heat map)", "/api/grid", 20),
        ("/api/report (report tables and plots)", "/api/report", 5),
    ]:
        times, size = timed(conn, path, runs)
        summary(label, times, size)
    cell = {k: first["rows"][0][k] for k in ("architecture", "optimizer", "dataset", "resolution")}
    times, size = timed(conn, "/api/cell?" + urllib.parse.urlencode(cell), 50)
    summary("/api/cell (a cell, every method, per seed)", times, size)
    # The trial table: 50 rows a page, sorted by every column both ways, filtered by each axis,
    # searched, and paged deep.
    columns = ["architecture", "optimizer", "dataset", "resolution", "method", "seed", "state", "epoch",
               "train_loss", "last_val_accuracy", "best_val_accuracy", "top1"]
    queries = []
    for column in columns:
        for desc in ("0", "1"):
            queries.append({"sort": column, "desc": desc})
    for axis in ("architecture", "optimizer", "dataset", "resolution", "method", "seed"):
        for value in json.loads(get(conn, "/api/trials?size=1"))["facets"][axis][:3]:
            queries.append({axis: value, "sort": "top1", "desc": "1"})
    queries += [{"q": "sal seed 3"}, {"q": "imagewoof"}, {"page": "100"}, {"page": "268"}]
    times = []
    for round_ in range(3):
        for query in queries:
            q = dict(query, size="50")
            start = time.perf_counter()
            get(conn, "/api/trials?" + urllib.parse.urlencode(q))
            times.append(time.perf_counter() - start)
    summary(f"/api/trials (trial table page: {len(queries)} queries x 3)", times)
    conn.close()
    browser_views(url, report_html)


def chromedriver():
    port = free_port()
    try:
        driver = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
    except FileNotFoundError:
        return None, None
    for line in driver.stdout:
        if "started successfully" in line:
            break
    return driver, f"http://127.0.0.1:{port}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webdriver(base, method, path, body=None):
    conn = connection(base)
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    response = json.loads(conn.getresponse().read())
    conn.close()
    return response["value"]


WEIGHT = """return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
  .reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize || 0), 0);"""


def browser_views(url, report_html):
    driver, base = chromedriver()
    if driver is None:
        print("browser: SKIPPED (no chromedriver; apt install chromium chromium-driver)")
        return
    try:
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-background-networking", "--window-size=1400,1000", "--disable-cache"]}}}}
        session = webdriver(base, "POST", "/session", caps)["sessionId"]
        run = lambda script: webdriver(base, "POST", f"/session/{session}/execute/sync",
                                       {"script": script, "args": []})
        ready = ("const done = arguments[0]; const t0 = performance.now();"
                 "const check = () => document.querySelector('.cards') ? done(performance.now()) : setTimeout(check, 5);"
                 "check();")
        firsts, weights = [], []
        for _ in range(5):
            # A fresh page each time: about:blank first, so nothing of the last one is reused.
            webdriver(base, "POST", f"/session/{session}/url", {"url": "about:blank"})
            webdriver(base, "POST", f"/session/{session}/url", {"url": url})
            drawn = webdriver(base, "POST", f"/session/{session}/execute/async", {"script": ready.replace(
                "arguments[0]", "arguments[arguments.length - 1]"), "args": []})
            firsts.append(drawn / 1000)
            weights.append(run(WEIGHT))
        print("browser (headless Chromium, cache off, 5 loads):")
        summary("dashboard: first view (navigation to overview drawn)", firsts)
        print(f"  {'dashboard: page weight (every byte received)':<46} {max(weights) / 1024:7.1f} KiB")
        loads, weights = [], []
        for _ in range(5):
            webdriver(base, "POST", f"/session/{session}/url", {"url": "about:blank"})
            webdriver(base, "POST", f"/session/{session}/url", {"url": "file://" + os.path.abspath(report_html)})
            loads.append(run("const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd") / 1000)
            weights.append(os.path.getsize(report_html))
        summary("static report: load event (from the disk)", loads)
        print(f"  {'static report: page weight (the file)':<46} {weights[0] / 1024:7.1f} KiB")
        webdriver(base, "DELETE", f"/session/{session}")
    finally:
        driver.kill()


class Tab(threading.Thread):
    """One open tab: the live stream, and its view refetched on change at most every 2 s."""

    def __init__(self, url, kind, trial):
        super().__init__(daemon=True)
        self.url, self.kind, self.trial = url, kind, trial
        self.fetches = 0

    def view_paths(self):
        if self.kind == "overview":
            return ["/api/summary"]
        if self.kind == "trials":
            return ["/api/trials?size=50&sort=top1&desc=1"]
        return [f"/api/trials/{self.trial}"]

    def run(self):
        fetch = connection(self.url)
        for path in self.view_paths():
            get(fetch, path)
        stream = connection(self.url)
        query = f"?trial={self.trial}" if self.kind == "trial" else ""
        stream.request("GET", "/api/events" + query)
        response = stream.getresponse()
        last = 0.0
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: summary") and time.monotonic() - last >= 2.0:
                last = time.monotonic()
                for path in self.view_paths():
                    get(fetch, path)
                    self.fetches += 1


def tabs(url, n):
    conn = connection(url)
    trial = json.loads(get(conn, "/api/trials?size=1&state=pending"))["rows"]
    trial = trial[0]["id"] if trial else json.loads(get(conn, "/api/trials?size=1"))["rows"][0]["id"]
    conn.close()
    kinds = ["overview", "trials", "trial", "overview", "trials"]
    opened = [Tab(url, kinds[i % len(kinds)], trial) for i in range(n)]
    for tab in opened:
        tab.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    print(f"tabs: {n} open, {sum(t.fetches for t in opened)} view refetches", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "views":
        views(sys.argv[2].rstrip("/"), sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "tabs":
        tabs(sys.argv[2].rstrip("/"), int(sys.argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
