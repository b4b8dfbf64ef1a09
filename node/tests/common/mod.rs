//! Helpers shared by the end-to-end tests: running `evo` and writing small data sets in
//! their real formats.
#![allow(dead_code)]

pub mod browser;

use serde_json::Value;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
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

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
