//! Helpers shared by the end-to-end tests: running `evo` and writing small data sets in
//! their real formats.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

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
