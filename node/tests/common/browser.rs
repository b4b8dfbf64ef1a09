//! Headless Chromium driven over the DevTools protocol (a websocket), for the dashboard
//! tests: navigate, evaluate JavaScript in the page and read the result, on the page's
//! real clock (no virtual time, so the page's own timings mean something), and take a
//! screenshot. Chromium is `$EVO_BROWSER`, or `chromium`, `chromium-browser` or
//! `google-chrome` on the PATH; without one the test fails and says what to install.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The browser binary.
pub fn browser_binary() -> PathBuf {
    let candidates = std::env::var("EVO_BROWSER")
        .ok()
        .into_iter()
        .chain(["chromium", "chromium-browser", "google-chrome"].map(String::from));
    for c in candidates {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        if let Some(path) = found.filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
    }
    panic!(
        "no Chromium found: install Debian's chromium (apt-get install chromium; \
         scripts/test.sh does) or set EVO_BROWSER"
    );
}

/// The flags every headless run gets: no sandbox (tests run as root in CI), no GPU, and
/// no background traffic (this machine's network is closed).
fn base_flags(profile: &Path) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1400,1900",
    ]
    .map(String::from)
    .to_vec();
    flags.push(format!("--user-data-dir={}", profile.display()));
    flags
}

/// A headless Chromium with one page, driven over its DevTools websocket.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium on a blank page and connects to it.
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(browser_binary())
            .args(base_flags(profile.path()))
            .arg("--remote-debugging-port=0")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // It says where its DevTools listen on stderr; the rest of stderr is drained.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(at) = line.find("ws://") {
                        let _ = tx.send(line[at..].trim().to_string());
                        sent = true;
                    }
                }
            }
        });
        let browser_ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed its DevTools address");
        let port = browser_ws
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .and_then(|h| h.rsplit(':').next())
            .unwrap()
            .to_string();
        let list: Value =
            super::wait_for(Duration::from_secs(10), "the DevTools target list", || {
                let mut r = ureq::get(&format!("http://127.0.0.1:{port}/json/list"))
                    .call()
                    .ok()?;
                serde_json::from_str(&r.body_mut().read_to_string().ok()?).ok()
            });
        let page_ws = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (page, _) = tungstenite::connect(page_ws.as_str()).expect("the page's websocket");
        Browser {
            child,
            _profile: profile,
            page,
            next_id: 1,
        }
    }

    /// Sends a DevTools command and waits for its answer (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.page.send(Message::text(message)).unwrap();
        loop {
            let msg = self.page.read().unwrap();
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// The value of JavaScript `expression` in the page (promises awaited), or the
    /// exception it threw.
    pub fn try_eval(&mut self, expression: &str) -> Result<Value, Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        match r.get("exceptionDetails") {
            Some(e) => Err(e.clone()),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// The value of JavaScript `expression` in the page; an exception fails the test.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// Evaluates `expression` until it is truthy, for at most `limit`; fails the test
    /// naming `what` otherwise. Gives the value.
    pub fn wait_until(&mut self, limit: Duration, what: &str, expression: &str) -> Value {
        let start = Instant::now();
        loop {
            // Not yet there (the page still loading) reads as false.
            let v = self.try_eval(expression).unwrap_or(Value::Null);
            let truthy =
                !(v.is_null() || v == Value::Bool(false) || v == json!(0) || v == json!(""));
            if truthy {
                return v;
            }
            if start.elapsed() > limit {
                let html = self.eval("document.documentElement.outerHTML.slice(0, 4000)");
                panic!("timed out after {limit:?}: {what}\n{html}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A screenshot of `url` (after `budget_ms` of the page's time) saved to `out`.
pub fn screenshot(url: &str, budget_ms: u64, out: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new(browser_binary())
        .args(base_flags(profile.path()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(format!("--screenshot={}", out.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("chromium runs");
    assert!(status.success(), "chromium failed to take a screenshot");
}
