//! Helpers shared by the end-to-end tests: running `evo` and writing small data sets in
//! their real formats.
#![allow(dead_code)]

pub mod browser;

use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn evo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_evo"))
        .args(args)
        .output()
        .expect("evo runs")
}

pub fn json_line(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "evo failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A small CIFAR-10 binary release: `per_batch` records in each of the six files, class
/// = record index mod 10, images dark but for a bright band of rows that gives the class.
pub fn write_cifar10(dir: &Path, per_batch: usize) {
    let root = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&root).unwrap();
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for name in names {
        let mut bytes = Vec::new();
        for i in 0..per_batch {
            let class = (i % 10) as u8;
            bytes.push(class);
            for _channel in 0..3 {
                for row in 0..32u8 {
                    let v = if row / 3 == class { 200 } else { 20 };
                    bytes.extend(std::iter::repeat_n(v, 32));
                }
            }
        }
        std::fs::write(root.join(name), bytes).unwrap();
    }
}

/// The quick config of the repository.
pub fn quick_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs/quick-cifar10.toml")
        .display()
        .to_string()
}

/// The arguments of `evo run` on the quick config with the test's `data`, a state
/// directory and an HTTP port, and tiny validation and batch sizes; callers add the rest.
/// Port 0 lets the system pick a free port when the node binds it, which no other
/// process can take in between; [`Evo::port`] reads the one picked from the node's log.
pub fn tiny_run_args(data: &Path, state: &Path, port: u16) -> Vec<String> {
    vec![
        "run".into(),
        "--config".into(),
        quick_config(),
        "--data".into(),
        data.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
        "--http".into(),
        format!("127.0.0.1:{port}"),
        "data.validation_images=30".into(),
        "training.batch=10".into(),
    ]
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    trainer::individual::sha256_hex(bytes)
}

/// Polls until `f` gives something; fails the test, naming `what`, after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(limit, f).unwrap_or_else(|| panic!("timed out after {limit:?}: {what}"))
}

/// Polls until `f` gives something, for at most `limit`: `None` if it never did.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET http://127.0.0.1:{port}{path}`: the status code and body (any status).
pub fn get(port: u16, path: &str) -> Result<(u16, String), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .call()
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// An `evo` process started by a test; killed when dropped. Its stderr is drained into a
/// log by a thread, so that a chatty process never blocks on a full pipe, the test can
/// read what it said (its HTTP port among it), and a failing test shows it.
pub struct Evo {
    /// The process.
    pub child: Child,
    log: Arc<Mutex<String>>,
    port: OnceLock<u16>,
}

impl Evo {
    /// Starts `evo` with `args` (stdout discarded).
    pub fn spawn(args: &[String]) -> Evo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_evo"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("evo starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Evo {
            child,
            log,
            port: OnceLock::new(),
        }
    }

    /// What the process has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The port of the node's HTTP endpoint, from the `dashboard:` line it prints once
    /// it has bound it (started with port 0, the system chose it). Waits up to 60 s; the
    /// test fails if the line never comes.
    pub fn port(&self) -> u16 {
        *self.port.get_or_init(|| {
            poll(Duration::from_secs(60), || dashboard_port(&self.log())).unwrap_or_else(|| {
                panic!(
                    "the node never said where its dashboard is; its log:\n{}",
                    self.log()
                )
            })
        })
    }

    /// Waits (up to `limit`) for the process to exit, then for its stderr to be drained:
    /// how it exited and everything it wrote to stderr.
    pub fn wait_exit(&mut self, limit: Duration, what: &str) -> (ExitStatus, String) {
        let exit = wait_for(limit, what, || self.child.try_wait().unwrap());
        // The reader thread sees end-of-file once the process is gone.
        wait_for(
            Duration::from_secs(5),
            "the process's stderr to close",
            || (Arc::strong_count(&self.log) == 1).then_some(()),
        );
        (exit, self.log())
    }
}

impl Drop for Evo {
    /// Stops the process; if the test failed, prints what it logged, for the CI log.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let port = self.port.get().map_or("?".to_string(), |p| p.to_string());
            eprintln!("--- the log of the node on port {port} ---\n{}", self.log());
        }
    }
}

/// The port in the first `dashboard: http://HOST:PORT/` line of a node's log.
pub fn dashboard_port(log: &str) -> Option<u16> {
    let url = log
        .lines()
        .find_map(|l| l.strip_prefix("dashboard: http://"))?;
    let host_port = url.split('/').next()?;
    host_port.rsplit(':').next()?.parse().ok()
}
