//! The live dashboard as a person meets it: a real `--local` sweep of small SAL trials watched in
//! headless Chromium (the trial table, a curve that gains points as epochs end, SAL's intervention
//! markers, a dropped stream resumed without a gap or a duplicate), its Prometheus metrics read by
//! a real Prometheus parser, `coordinator dashboard` over the finished state dir, and the token
//! required off loopback (in the browser's login form and at the API).
//!
//! Screenshots go to `target/tmp/dashboard-screenshots/`; the docs show the best of them.
//!
//! To watch a trial at leisure, the test stops its process (SIGSTOP) and lets it go on (SIGCONT):
//! no wait depends on how fast the machine trains. Needs chromium and chromedriver (`.ci/run`
//! installs them; without them the test says SKIPPED).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::browser::Browser;
use common::*;
use serde_json::Value;

const EPOCHS: usize = 16;

/// Two trials, the baseline and SAL, with SAL's stress climbing every epoch so that it intervenes
/// (no warm-up, no epoch counted as improved).
fn sweep(dir: &Path) -> PathBuf {
    let smoke =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../sweeps/smoke.yaml")).unwrap();
    let text = smoke
        .replace("name: smoke", "name: watched")
        .replace("epochs: 10", &format!("epochs: {EPOCHS}"))
        .replace("seeds: [1, 2, 3]", "seeds: [1]")
        .replace("  warmup_epochs: 2", "  warmup_epochs: 0\n  eps_loss: 100.0");
    assert!(text.contains("eps_loss: 100.0") && text.contains("seeds: [1]\n"), "smoke.yaml changed shape");
    let path = dir.join("watched.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots")
}

/// A plain HTTP client that answers every status (the test looks at 401s).
fn http() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn get_json(url: &str) -> Value {
    let mut response = http().get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

/// The trial process of `trial_id` among this test's local workers (found by its job file, under
/// `state`); waits for it to start.
fn trial_process(state: &Path, trial_id: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let args: Vec<String> =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let Some(at) = args.iter().position(|a| a == "--job") else { continue };
            if !args.iter().any(|a| a == "trial-process")
                || !args[at + 1].starts_with(&*state.to_string_lossy())
            {
                continue;
            }
            let Ok(job) = std::fs::read_to_string(&args[at + 1]) else { continue };
            let job: Value = serde_json::from_str(&job).unwrap_or_default();
            if job["trial_id"] == trial_id {
                return entry.file_name().to_string_lossy().into_owned();
            }
        }
        assert!(Instant::now() < deadline, "trial {trial_id} never started a process");
        std::thread::yield_now();
    }
}

fn signal(pid: &str, signal: &str) {
    let status = Command::new("kill").args([signal, pid]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// `coordinator dashboard --state-dir STATE ARGS...`, and the address it serves on.
fn serve_dashboard(state: &Path, args: &[&str]) -> (Process, String) {
    let served = Process::spawn(
        Command::new(binary("coordinator")).arg("dashboard").args(args).arg("--state-dir").arg(state),
    );
    let line = served.stdout.wait_for("`dashboard on`", |l| l.starts_with("dashboard on "));
    let url = line.trim_start_matches("dashboard on ").trim().to_string();
    (served, url)
}

/// Epochs the dashboard's API says are stored for a trial.
fn stored_epochs(url: &str, trial: &str) -> usize {
    get_json(&format!("{url}api/trials/{trial}/series"))["points"].as_u64().unwrap() as usize
}

/// Waits until the API says `trial` has at least `n` epochs stored.
fn wait_for_epochs(url: &str, trial: &str, n: usize) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stored = stored_epochs(url, trial);
        if stored >= n {
            return stored;
        }
        assert!(Instant::now() < deadline, "trial {trial} stayed at {stored} epochs");
        std::thread::yield_now();
    }
}

/// Samples by name: each one's labels and value.
type Families = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// The families and samples of a Prometheus text exposition, through the `prometheus_client`
/// package's parser (in the project's venv), or why not.
fn parse_prometheus(text: &str) -> Result<Families, String> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let program = "import json, sys\n\
                   from prometheus_client.parser import text_string_to_metric_families\n\
                   out = {}\n\
                   for family in text_string_to_metric_families(sys.stdin.read()):\n\
                   \x20   for s in family.samples:\n\
                   \x20       out.setdefault(s.name, []).append([s.labels, s.value])\n\
                   print(json.dumps(out))\n";
    let mut child = Command::new(&python)
        .args(["-c", program])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", python.display()))?;
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        return Err("prometheus_client is not in .venv (scripts/setup.sh --test-tools installs it)".into());
    }
    assert!(output.status.success(), "the Prometheus parser refused /metrics: {stderr}\n{text}");
    Ok(serde_json::from_slice(&output.stdout).unwrap())
}

/// Skips (returns) with a reason, unless the test tools are required (`.ci/run` requires them).
fn skip(reason: &str) {
    assert!(std::env::var_os("SAL_REQUIRE_TEST_TOOLS").is_none(), "{reason}");
    eprintln!("SKIPPED: {reason}");
}

#[test]
fn a_browser_watches_a_local_sweep_train_live_and_the_dashboard_guards_itself_off_loopback() {
    let browser = match Browser::start() {
        Ok(browser) => browser,
        Err(reason) => return skip(&reason),
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut command = Command::new(binary("coordinator"));
    command.arg("--sweep").arg(sweep(dir.path())).arg("--state-dir").arg(&state).args([
        "--local",
        "--workers",
        "2",
        "--dashboard",
        "127.0.0.1:0",
    ]);
    let mut coordinator = Process::spawn(&mut command);
    let line = coordinator.stdout.wait_for("`dashboard on`", |l| l.starts_with("dashboard on "));
    let url = line.trim_start_matches("dashboard on ").trim().to_string();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");

    // Both trials are stopped in their processes: the baseline at once (the sweep, and with it the
    // dashboard, ends when it does), SAL once it has stored two epochs.
    let trials = get_json(&format!("{url}api/trials"));
    let id_of = |method: &str| -> String {
        let rows = trials["rows"].as_array().unwrap();
        rows.iter().find(|r| r["method"] == method).unwrap()["id"].as_str().unwrap().to_string()
    };
    let (baseline, sal) = (id_of("baseline"), id_of("sal"));
    let baseline_pid = trial_process(&state, &baseline);
    signal(&baseline_pid, "-STOP");
    let sal_pid = trial_process(&state, &sal);
    wait_for_epochs(&url, &sal, 2);
    signal(&sal_pid, "-STOP");
    let paused_at = stored_epochs(&url, &sal);
    assert!(paused_at < EPOCHS, "SAL finished before it could be watched");

    // The table lists both trials, running.
    browser.goto(&format!("{url}#/trials"));
    let rows =
        browser.wait_for("the trial table", "document.querySelectorAll('tr[data-trial]').length === 2 && 2");
    assert_eq!(rows, 2);
    let listed = browser
        .eval("return [...document.querySelectorAll('tr[data-trial]')].map((r) => r.dataset.trial).sort()");
    let mut expected = vec![baseline.clone(), sal.clone()];
    expected.sort();
    assert_eq!(listed, serde_json::json!(expected));
    browser.screenshot(&screenshots().join("trials-running.png"));
    // The overview names both workers with what their nodes use.
    browser.goto(&url);
    browser.wait_for(
        "the workers table",
        "document.querySelectorAll('tr[data-worker]').length === 2 && [...document.querySelectorAll('tr[data-worker] td:nth-child(7)')].every((td) => Number(td.textContent) > 0)",
    );
    browser.screenshot(&screenshots().join("overview-running.png"));

    // Metrics while both trials are held: a real Prometheus parser reads them.
    let metrics = http().get(&format!("{url}metrics")).call().unwrap().body_mut().read_to_string().unwrap();
    match parse_prometheus(&metrics) {
        Ok(families) => {
            let trials_by_state: f64 = families["sal_trials"].iter().map(|(_, v)| v).sum();
            assert_eq!(trials_by_state, 2.0, "{metrics}");
            assert_eq!(families["sal_leases"][0].1, 2.0, "{metrics}");
            let up: Vec<f64> = families["sal_worker_up"].iter().map(|(_, v)| *v).collect();
            assert_eq!(up, vec![1.0, 1.0], "{metrics}");
            assert!(families.keys().any(|k| k.starts_with("sal_rpc_seconds")), "{metrics}");
            // The series budget: no label names a trial; besides the RPC histograms, 6 states,
            // the epoch counter, the leases, and 3 per worker (no GPU here): the cluster's size.
            for (name, samples) in &families {
                for (labels, _) in samples {
                    assert!(!labels.contains_key("trial"), "{name} {labels:?}");
                    assert!(!labels.values().any(|v| *v == baseline || *v == sal), "{name} {labels:?}");
                }
            }
            let series: usize = families
                .iter()
                .filter(|(name, _)| !name.starts_with("sal_rpc_seconds") && !name.ends_with("_created"))
                .map(|(_, samples)| samples.len())
                .sum();
            assert_eq!(series, 6 + 1 + 1 + 3 * 2, "{metrics}");
        }
        Err(reason) => skip(&reason),
    }

    // SAL's page shows the epochs stored so far; the trial goes on and the curve gains points.
    browser.goto(&format!("{url}#/trial/{sal}"));
    let shown = browser.wait_for(
        "SAL's curves and an open stream",
        "window.__dashboard.stream && window.__dashboard.stream.readyState === 1 && document.querySelector('.charts[data-points]') && Number(document.querySelector('.charts').dataset.points) + 1",
    );
    let shown = shown.as_u64().unwrap() as usize - 1;
    assert!(shown >= 2 && shown <= paused_at + 1, "the page shows {shown} epochs, {paused_at} were stored");
    signal(&sal_pid, "-CONT");
    let gained = browser.wait_for(
        "a new point on the curve",
        &format!("Number(document.querySelector('.charts').dataset.points) > {shown} && Number(document.querySelector('.charts').dataset.points)"),
    );
    assert!(gained.as_u64().unwrap() as usize > shown);

    // The stream drops; epochs are stored meanwhile; it resumes from the last event it saw.
    let before = browser.eval("window.__dashboard.pauseStream(); return window.__dashboard.seen.slice()");
    let points_before =
        browser.eval("return Number(document.querySelector('.charts').dataset.points)").as_u64().unwrap()
            as usize;
    wait_for_epochs(&url, &sal, (points_before + 2).min(EPOCHS));
    browser.eval("window.__dashboard.resumeStream(); return true");
    browser.wait_for(
        "every epoch on SAL's page, and the trial done",
        &format!(
            "Number(document.querySelector('.charts').dataset.points) === {EPOCHS} && document.getElementById('trial-state').textContent === '(done)'"
        ),
    );
    browser.screenshot(&screenshots().join("trial-live.png"));
    let seen: Vec<i64> = serde_json::from_value(browser.eval("return window.__dashboard.seen")).unwrap();
    let before: Vec<i64> = serde_json::from_value(before).unwrap();
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "event ids increase, none twice: {seen:?}");
    assert!(seen.len() > before.len(), "events arrived after the resume: {seen:?}");
    let epochs = browser.eval("return document.querySelector('.charts').dataset.epochs");
    let all: Vec<String> = (1..=EPOCHS).map(|e| e.to_string()).collect();
    assert_eq!(epochs.as_str().unwrap(), all.join(","), "no epoch missing or repeated");

    // Let the baseline finish; the sweep ends.
    signal(&baseline_pid, "-CONT");
    coordinator.wait_success("coordinator --local");

    // Every intervention SAL made has its marker on the page.
    let records = records(&state);
    let sal_record = records.iter().find(|r| r.id == sal).unwrap();
    let interventions: Vec<u32> = sal_record
        .result
        .as_ref()
        .unwrap()
        .history
        .iter()
        .filter(|e| e.sal.as_ref().is_some_and(|s| s.applied != sal::Action::None))
        .map(|e| e.epoch)
        .collect();
    assert!(!interventions.is_empty(), "the test's settings make SAL intervene");
    let markers: Vec<u32> =
        serde_json::from_value(browser.eval(
            "return [...document.querySelectorAll('[data-marker]')].map((m) => Number(m.dataset.epoch))",
        ))
        .unwrap();
    assert_eq!(markers, interventions);
    assert_eq!(browser.eval("return window.__dashboard.errors"), serde_json::json!([]));

    // The finished state dir, served read-only by `coordinator dashboard`.
    let (mut served, url) = serve_dashboard(&state, &["--listen", "127.0.0.1:0"]);
    for (view, ready) in [
        ("", "document.querySelector('.card[data-state=done] .n') && document.querySelector('.card[data-state=done] .n').textContent === '2'"),
        ("#/trials", "document.querySelectorAll('tr[data-trial]').length === 2"),
        (&*format!("#/trial/{sal}"), &*format!("document.querySelector('.charts') && document.querySelector('.charts').dataset.points === '{EPOCHS}'")),
        ("#/cell?architecture=small_cnn&optimizer=adam&dataset=synthetic&resolution=32", "document.querySelector('tr[data-method=sal]')"),
        ("#/grid", "document.getElementById('heatmap')"),
        ("#/report", "document.querySelector('.report table') && document.querySelector('.report svg')"),
    ] {
        browser.goto(&format!("{url}{view}"));
        browser.wait_for(view, ready);
        let name = match view {
            "" => "overview".to_string(),
            v => v.trim_start_matches("#/").split(['/', '?']).next().unwrap().to_string(),
        };
        browser.screenshot(&screenshots().join(format!("{name}.png")));
        let text = browser.eval("return document.getElementById('view').textContent");
        assert!(!text.as_str().unwrap().contains("Something went wrong"), "{view}: {text}");
        if name == "cell" {
            // The cell's paired statistics: one seed, so no CI.
            let cell = browser.eval("return document.querySelector('tr[data-method=sal]').textContent");
            assert!(cell.as_str().unwrap().contains("n=1: none"), "{cell}");
        }
    }
    assert_eq!(browser.eval("return window.__dashboard.errors"), serde_json::json!([]));
    served.terminate();
    served.wait();

    // Off loopback the token is required: no token, no dashboard; with one, 401 without it.
    let refused = Command::new(binary("coordinator"))
        .args(["dashboard", "--listen", "0.0.0.0:0", "--state-dir"])
        .arg(&state)
        .env_remove("SAL_TOKEN")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("needs a token") && said.lines().count() == 1, "{said}");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    std::fs::set_permissions(&token_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (mut guarded, served_at) =
        serve_dashboard(&state, &["--listen", "0.0.0.0:0", "--token-file", token_file.to_str().unwrap()]);
    let port = served_at.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let url = format!("http://127.0.0.1:{port}/");
    for path in ["api/summary", "api/trials", "metrics", "api/events"] {
        let response = http().get(&format!("{url}{path}")).call().unwrap();
        assert_eq!(response.status(), 401, "{path} without the token");
        let response =
            http().get(&format!("{url}{path}")).header("Authorization", "Bearer wrong").call().unwrap();
        assert_eq!(response.status(), 401, "{path} with a wrong token");
    }
    let summary = http()
        .get(&format!("{url}api/summary"))
        .header("Authorization", "Bearer s3cret-token")
        .call()
        .unwrap();
    assert_eq!(summary.status(), 200);
    // In the browser: the login form, then the dashboard with its cookie.
    browser.goto(&url);
    browser.wait_for("the login form", "document.querySelector('form[action=\"/login\"] input[name=token]')");
    // Styled: the stylesheet is open to all (no sweep data in it).
    let styled = browser.eval("return getComputedStyle(document.querySelector('form')).borderTopLeftRadius");
    assert_eq!(styled, "10px");
    browser.screenshot(&screenshots().join("login.png"));
    browser.eval(
        "document.querySelector('input[name=token]').value = 's3cret-token'; document.querySelector('form').submit(); return true",
    );
    browser.wait_for("the dashboard after logging in", "document.getElementById('sweep-name') && document.getElementById('sweep-name').textContent === 'watched'");
    let cookie_visible = browser.eval("return document.cookie");
    assert_eq!(cookie_visible, "", "the session cookie is HttpOnly");
    guarded.terminate();
    guarded.wait();
}

/// At the protocol level: an `epochs` event's id is the store's cursor, and a stream opened with
/// `Last-Event-ID` sends exactly the epochs after it, then a heartbeat comment keeps it open.
#[test]
fn a_stream_resumed_with_last_event_id_sends_exactly_the_epochs_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = noop_sweep(dir.path(), 1, 6, 0);
    let state = dir.path().join("state");
    let mut command = Command::new(binary("coordinator"));
    command.arg("--sweep").arg(&sweep).arg("--state-dir").arg(&state).args([
        "--local",
        "--workers",
        "1",
        "--no-dashboard",
    ]);
    Process::spawn(&mut command).wait_success("coordinator --local");
    let (mut served, url) = serve_dashboard(&state, &["--listen", "127.0.0.1:0"]);
    let trial = get_json(&format!("{url}api/trials"))["rows"][0]["id"].as_str().unwrap().to_string();

    // The first event of a stream opened at the beginning holds all six epochs.
    let read_epochs_event = |last: Option<&str>| -> (String, Value) {
        let mut request = http().get(&format!("{url}api/events?trial={trial}"));
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        let mut response = request.call().unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_string();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        let mut reader = std::io::BufReader::new(response.body_mut().as_reader());
        let (mut event, mut id, mut data) = (String::new(), String::new(), String::new());
        loop {
            let mut line = String::new();
            assert!(std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0, "the stream ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if event == "epochs" {
                    return (id, serde_json::from_str(&data).unwrap());
                }
                (event, id, data) = (String::new(), String::new(), String::new());
            } else if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    };
    let (last_id, everything) = read_epochs_event(None);
    assert_eq!(everything["epoch"], serde_json::json!([1, 2, 3, 4, 5, 6]));
    // The cursor after epoch 2: the rowid of that epoch's report.
    let db = rusqlite::Connection::open_with_flags(
        state.join(coordinator::store::DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rowids: Vec<i64> = db
        .prepare("SELECT rowid FROM epochs WHERE trial_id = ?1 ORDER BY epoch")
        .unwrap()
        .query_map([&trial], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rowids.len(), 6);
    assert_eq!(last_id, rowids[5].to_string(), "an epochs event's id is the newest epoch's cursor");
    let (resumed_id, rest) = read_epochs_event(Some(&rowids[1].to_string()));
    assert_eq!(rest["epoch"], serde_json::json!([3, 4, 5, 6]), "exactly the epochs after the cursor");
    assert_eq!(resumed_id, last_id);
    served.terminate();
    served.wait();
}
