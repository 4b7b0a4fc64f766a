//! A headless Chromium, driven through chromedriver (W3C WebDriver, JSON over HTTP on loopback):
//! what the dashboard's browser test sees and does. Debian's `chromium` and `chromium-driver`
//! (`.ci/run` installs both); [`Browser::start`] answers why not when either is missing.
//!
//! Every wait runs in the page: a script that resolves once its condition holds (checked every
//! 50 ms there), bounded by the WebDriver script timeout, which only turns a hang into a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::{Process, PATIENCE};

pub struct Browser {
    driver: Process,
    /// Chromium's profile and temporary files (its `TMPDIR`): removed with the browser, where
    /// chromedriver's own would stay behind in `/tmp`.
    files: tempfile::TempDir,
    base: String,
    session: String,
    http: ureq::Agent,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium session (1400×1000).
    pub fn start() -> Result<Self, String> {
        let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .ok_or("no chromium (apt install chromium chromium-driver)")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        if Command::new("chromedriver").arg("--version").output().is_err() {
            return Err("no chromedriver (apt install chromium-driver)".into());
        }
        let files = tempfile::tempdir().map_err(|e| e.to_string())?;
        let driver = Process::spawn(
            Command::new("chromedriver").arg(format!("--port={port}")).env("TMPDIR", files.path()),
        );
        driver.stdout.wait_for("chromedriver's readiness", |l| l.contains("started successfully"));
        let http: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut browser =
            Self { driver, files, base: format!("http://127.0.0.1:{port}"), session: String::new(), http };
        let profile = format!("--user-data-dir={}", browser.files.path().join("profile").display());
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "goog:chromeOptions": { "binary": chromium, "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1000", "--hide-scrollbars", profile,
            ]},
            "timeouts": { "script": PATIENCE.as_millis() as u64, "pageLoad": 60_000 },
        }}});
        let session = browser.call("POST", "/session", Some(capabilities))?;
        browser.session = session["sessionId"].as_str().ok_or("no session id")?.to_string();
        Ok(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match body {
            Some(body) => {
                self.http.post(&url).header("Content-Type", "application/json").send(body.to_string())
            }
            None if method == "DELETE" => self.http.delete(&url).call(),
            None => self.http.get(&url).call(),
        };
        let mut response = response.map_err(|e| format!("{method} {path}: {e}"))?;
        let text = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))?;
        if response.status().is_success() {
            Ok(value["value"].clone())
        } else {
            Err(format!("{method} {path}: {}", value["value"]))
        }
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        self.call(method, &path, body).unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    /// Opens `url` and waits for the page's load event.
    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `body` (a function body: `return ...`) in the page and answers its value.
    pub fn eval(&self, body: &str) -> Value {
        self.session_call("POST", "/execute/sync", Some(json!({ "script": body, "args": [] })))
    }

    /// Waits until `expression` (JavaScript, evaluated in the page) is truthy and answers its
    /// value; `what` names the wait in the failure.
    pub fn wait_for(&self, what: &str, expression: &str) -> Value {
        let script = format!(
            "const done = arguments[arguments.length - 1];\n\
             const check = () => {{ let v; try {{ v = ({expression}); }} catch (e) {{ v = null; }}\n\
               if (v) done(v); else setTimeout(check, 50); }};\n\
             check();"
        );
        let path = format!("/session/{}/execute/async", self.session);
        self.call("POST", &path, Some(json!({ "script": script, "args": [] })))
            .unwrap_or_else(|e| panic!("waiting for {what} ({expression}): {e}"))
    }

    /// Saves a screenshot of the window as PNG; answers its path.
    pub fn screenshot(&self, path: &Path) -> PathBuf {
        let encoded = self.session_call("GET", "/screenshot", None);
        let bytes = decode_base64(encoded.as_str().expect("a screenshot is a base64 string"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
        path.to_path_buf()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        self.driver.kill();
    }
}

/// Standard base64 (RFC 4648, with padding), as WebDriver sends screenshots.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let bits = data.iter().fold(0u32, |acc, &c| (acc << 6) | value(c)) << (6 * (4 - data.len()));
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..data.len()]);
    }
    out
}
