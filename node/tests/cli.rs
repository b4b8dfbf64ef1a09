//! End-to-end tests of the `evo` command, run the way a user runs it.

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use md5::Digest;
use serde_json::Value;
use std::io::{Read, Write};
mod common;

use common::{evo, json_line, ok, write_cifar10};

#[test]
fn genome_walk_exercises_every_mutation() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("walk.jsonl");
    let out = ok(evo(&[
        "genome",
        "walk",
        "--seed",
        "7",
        "--steps",
        "1500",
        "--out",
        out_file.to_str().unwrap(),
    ]));
    let report = json_line(&out);
    assert_eq!(report["steps"], 1500);
    assert_eq!(report["invalid"], 0);
    let applied = report["applied"].as_object().unwrap();
    assert_eq!(applied.len(), 11);
    for (name, count) in applied {
        assert!(count.as_u64().unwrap() > 0, "{name} never applied");
    }
    for key in ["failed", "max_vertices", "max_params", "max_flops"] {
        assert!(report.get(key).is_some(), "{key} missing");
    }
    let lines = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(lines.lines().count(), 1500);
    let last: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert!(last["genome"]["vertices"].is_array());
    // Same seed, same walk.
    let again = json_line(&ok(evo(&[
        "genome", "walk", "--seed", "7", "--steps", "1500",
    ])));
    assert_eq!(again["applied"], report["applied"]);
    assert_eq!(again["max_flops"], report["max_flops"]);
}

#[test]
fn genome_show_prints_a_summary_and_dot_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.json");
    let out = ok(evo(&["genome", "reference", "small"]));
    std::fs::write(&small, &out.stdout).unwrap();
    let g: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g["learning_rate"], 0.05);
    let summary =
        String::from_utf8(ok(evo(&["genome", "show", small.to_str().unwrap()])).stdout).unwrap();
    assert!(summary.contains("4 vertices"), "{summary}");
    assert!(summary.contains("8x8x64"), "{summary}");
    let dot =
        String::from_utf8(ok(evo(&["genome", "show", "--dot", small.to_str().unwrap()])).stdout)
            .unwrap();
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("conv 3x3 s2 -> 64"));

    let bad = dir.path().join("bad.json");
    let mut broken = g.clone();
    broken["edges"][0]["op"]["Conv"]["stride"] = 3.into();
    std::fs::write(&bad, broken.to_string()).unwrap();
    let out = evo(&["genome", "show", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stride 3"), "{err}");
    let out = evo(&[
        "genome",
        "show",
        dir.path().join("missing.json").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
}

#[test]
fn train_reports_scores_and_saves_a_model_that_can_be_inherited() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar10(dir.path(), 20);
    let data = dir.path().join("cifar-10-batches-bin");
    let genome = dir.path().join("initial.json");
    // Bands of 288 equal pixels: a learning rate of 0.1 would overshoot.
    let mut g: Value = serde_json::from_slice(&ok(evo(&["genome", "initial"])).stdout).unwrap();
    g["learning_rate"] = 0.0005.into();
    std::fs::write(&genome, g.to_string()).unwrap();
    let model = dir.path().join("model");
    // A quick `evo train` of that genome on that data, with extra flags.
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--genome",
            genome.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--batch",
            "10",
            "--validation",
            "20",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        ok(evo(&args))
    };
    let out = train(&[
        "--steps",
        "30",
        "--out",
        model.to_str().unwrap(),
        "--no-augment",
    ]);
    let r = json_line(&out);
    for key in [
        "steps",
        "seconds",
        "train_loss",
        "val_accuracy",
        "test_accuracy",
        "inherited",
        "fresh",
        "flops",
    ] {
        assert!(r.get(key).is_some(), "{key} missing from {r}");
    }
    assert_eq!(r["steps"], 30);
    assert_eq!(r["inherited"], 0);
    assert_eq!(r["fresh"], 2);
    // A band of rows per class: a linear classifier separates them.
    assert!(r["test_accuracy"].as_f64().unwrap() > 0.9, "{r}");
    for f in ["genome.json", "weights.safetensors", "model.json"] {
        assert!(model.join(f).exists(), "{f}");
    }
    let again = json_line(&train(&[
        "--steps",
        "1",
        "--init-from",
        model.to_str().unwrap(),
    ]));
    assert_eq!(again["inherited"], 2);
    assert_eq!(again["fresh"], 0);
    // A rate probe, as a final training runs one: a copy per factor, the best goes on.
    let probed = json_line(&train(&[
        "--steps",
        "10",
        "--init-from",
        model.to_str().unwrap(),
        "--lr-probe",
        "1,0.5",
        "--probe-seconds",
        "30",
    ]));
    let probe = &probed["probe"];
    assert_eq!(probe["factors"], serde_json::json!([1.0, 0.5]), "{probed}");
    assert_eq!(
        probe["scores"].as_array().map(Vec::len),
        Some(2),
        "{probed}"
    );
    assert_eq!(
        probe["losses"].as_array().map(Vec::len),
        Some(2),
        "{probed}"
    );
    let chosen = probed["lr_scale"].as_f64().unwrap();
    assert!(chosen == 1.0 || chosen == 0.5, "{probed}");
    // Each copy's steps and the long training's.
    assert_eq!(probed["steps"], 30, "{probed}");
    assert!(json_line(&train(&["--steps", "1", "--lr-scale", "0.5"]))["probe"].is_null());
    // The linear classifier has no convolution to widen: it trains as it is.
    let widened = json_line(&train(&["--steps", "1", "--widen", "1"]));
    assert_eq!(widened["params"], r["params"], "{widened}");
    // A network with convolutions trains wider: the small reference's 16, 32 and 64
    // channels become 32, 64 and 128.
    let small = dir.path().join("small.json");
    std::fs::write(&small, ok(evo(&["genome", "reference", "small"])).stdout).unwrap();
    let small_train = |extra: &[&str]| {
        let mut args = vec!["train", "--genome", small.to_str().unwrap()];
        args.extend_from_slice(&["--data", data.to_str().unwrap(), "--batch", "10"]);
        args.extend_from_slice(&["--validation", "20", "--steps", "1", "--quiet"]);
        args.extend_from_slice(extra);
        json_line(&ok(evo(&args)))
    };
    let narrow = small_train(&[])["params"].as_u64().unwrap();
    let wide = small_train(&["--widen", "1"])["params"].as_u64().unwrap();
    assert!(wide > 2 * narrow, "{narrow} -> {wide}");
    // With a floor of epochs each width is timed first: a floor of 0 takes the widest
    // (two rounds), one no width meets leaves the genome as it is; neither trains the
    // timing steps.
    let timed = |floor: &str| {
        small_train(&[
            "--widen",
            "2",
            "--widen-min-epochs",
            floor,
            "--widen-timing-seconds",
            "0.05",
            "--seconds",
            "600",
        ])
    };
    let widest = timed("0");
    assert_eq!(widest["width_probe"]["rounds"], 2, "{widest}");
    assert!(widest["params"].as_u64().unwrap() > wide, "{widest}");
    assert_eq!(widest["steps"], 1, "{widest}");
    let none = timed("1e12");
    assert_eq!(none["width_probe"]["rounds"], 0, "{none}");
    assert_eq!(
        none["width_probe"]["trials"].as_array().unwrap().len(),
        2,
        "{none}"
    );
    assert_eq!(none["params"].as_u64().unwrap(), narrow, "{none}");
    // Bad probes are refused with a reason.
    for bad in [
        &["--lr-probe", "1,0.5"][..],
        &["--lr-probe", "1", "--probe-seconds", "5"],
        &["--lr-probe", "1,-0.5", "--probe-seconds", "5"],
        &["--lr-probe", "1,0.5", "--probe-seconds", "0"],
        &["--lr-scale", "0"],
        &["--widen", "5"],
        &["--widen", "1", "--widen-min-epochs=-1", "--seconds", "5"],
        &["--widen", "1", "--widen-min-epochs", "1"],
        &[
            "--widen",
            "1",
            "--widen-min-epochs",
            "1",
            "--seconds",
            "5",
            "--widen-timing-seconds",
            "0",
        ],
    ] {
        let mut args = vec!["train", "--genome", genome.to_str().unwrap()];
        args.extend_from_slice(&["--data", data.to_str().unwrap(), "--steps", "1"]);
        args.extend_from_slice(bad);
        let out = evo(&args);
        assert!(!out.status.success(), "{bad:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            ["probe", "lr-scale", "widen"]
                .iter()
                .any(|w| err.contains(w)),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn train_refuses_missing_or_mismatched_data() {
    let dir = tempfile::tempdir().unwrap();
    let genome = dir.path().join("g.json");
    std::fs::write(
        &genome,
        ok(evo(&["genome", "initial", "--side", "28"])).stdout,
    )
    .unwrap();
    let out = evo(&[
        "train",
        "--genome",
        genome.to_str().unwrap(),
        "--data",
        dir.path().join("nothing").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    write_cifar10(dir.path(), 12);
    let out = evo(&[
        "train",
        "--genome",
        genome.to_str().unwrap(),
        "--data",
        dir.path().join("cifar-10-batches-bin").to_str().unwrap(),
        "--validation",
        "10",
        "--quiet",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("28x28x3") && err.contains("32x32x3"), "{err}");
}

#[test]
fn bench_train_prints_speed() {
    let r = json_line(&ok(evo(&[
        "bench", "train", "--net", "linear", "--steps", "5",
    ])));
    assert_eq!(r["net"], "linear");
    assert_eq!(r["device"], "cpu");
    assert_eq!(r["steps"], 5);
    assert!(r["steps_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["images_per_s"].as_f64().unwrap() > 0.0);
    let out = evo(&["bench", "train", "--net", "huge"]);
    assert!(!out.status.success());
    // Two trainings at once, on a pool of two threads: the sum and each one's speed.
    let r = json_line(&ok(evo(&[
        "bench",
        "train",
        "--net",
        "linear",
        "--steps",
        "5",
        "--concurrent",
        "2",
        "--threads",
        "2",
    ])));
    assert_eq!(
        (r["concurrent"].as_u64(), r["threads"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(r["steps"], 10);
    let each = r["concurrent_steps_per_s"].as_array().unwrap();
    assert_eq!(each.len(), 2);
    let sum: f64 = each.iter().map(|x| x.as_f64().unwrap()).sum();
    assert!(
        (sum - r["steps_per_s"].as_f64().unwrap()).abs() < 1e-9,
        "{r}"
    );
    let out = evo(&["bench", "train", "--net", "linear", "--concurrent", "0"]);
    assert!(!out.status.success());
}

/// Serves `body` once per connection on 127.0.0.1 for up to `requests` requests.
fn serve(body: Vec<u8>, requests: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://{addr}")
}

/// A CIFAR-10 binary release of `per_batch` images a file, as the official `.tar.gz`.
fn cifar10_archive(per_batch: usize) -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    write_cifar10(src.path(), per_batch);
    let mut archive = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut archive, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(
            "cifar-10-batches-bin",
            src.path().join("cifar-10-batches-bin"),
        )
        .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    archive
}

#[test]
fn data_fetch_downloads_checks_and_unpacks() {
    let archive = cifar10_archive(3);
    let md5 = format!("{:x}", md5::Md5::digest(&archive));
    let url = serve(archive, 4);
    let dest = tempfile::tempdir().unwrap();

    let out = evo(&[
        "data",
        "fetch",
        "cifar10",
        "--dir",
        dest.path().to_str().unwrap(),
        "--base-url",
        &url,
        "--md5",
        "00000000000000000000000000000000",
        "--quiet",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("md5") || err.contains("checksum"), "{err}");
    assert!(!dest.path().join("cifar-10-batches-bin").exists());

    let out = ok(evo(&[
        "data",
        "fetch",
        "cifar10",
        "--dir",
        dest.path().to_str().unwrap(),
        "--base-url",
        &url,
        "--md5",
        &md5,
        "--quiet",
    ]));
    let folder = String::from_utf8(out.stdout).unwrap();
    assert!(folder.trim().ends_with("cifar-10-batches-bin"));
    assert!(dest
        .path()
        .join("cifar-10-batches-bin/test_batch.bin")
        .exists());
}

/// A copy of the repository's main script and quick config in a folder of its own, as a
/// fresh clone would have them (no data, no runs).
fn fresh_checkout() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in ["scripts/main.sh", "configs/quick-cifar10.toml"] {
        let to = root.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(repo.join(file), &to).unwrap();
    }
    root
}

/// `scripts/main.sh` of `checkout` with `args`, the test's evo and `env`.
fn main_sh(
    checkout: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(checkout.join("scripts/main.sh"))
        .args(args)
        .env("EVO_BIN", env!("CARGO_BIN_EXE_evo"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn the_main_script_with_no_data_fetches_cifar10_and_runs() {
    let archive = cifar10_archive(30);
    let md5 = format!("{:x}", md5::Md5::digest(&archive));
    let url = serve(archive, 2);
    let checkout = fresh_checkout();
    // Port 0: the node binds a free one and says which.
    let http = "127.0.0.1:0".to_string();
    let tiny = |minutes: &'static str| {
        [
            "--max-minutes",
            minutes,
            "--offline",
            "--http",
            &http,
            "data.validation_images=30",
            "training.batch=10",
            "training.steps=5",
            "evolution.population_size=4",
            "evolution.initial_population=2",
        ]
        .map(String::from)
    };
    let args = tiny("0.25");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = main_sh(
        checkout.path(),
        &args,
        &[("EVO_DATA_BASE_URL", &url), ("EVO_DATA_MD5", &md5)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("downloading CIFAR-10 into data/"),
        "{stdout}"
    );
    let port = common::dashboard_port(&stderr);
    assert!(port.is_some_and(|p| p > 0), "{stderr}");
    let root = checkout.path();
    assert!(root
        .join("data/cifar-10-batches-bin/test_batch.bin")
        .exists());
    assert!(root.join("runs/quick-cifar10/events.jsonl").exists());
    assert!(root.join("runs/quick-cifar10-best").is_dir());
    // The test accuracy of the exported best is printed at the end.
    assert!(stdout.to_lowercase().contains("test"), "{stdout}");

    // Run again: the data set is found, not fetched again (the server is gone).
    let args = tiny("0.3");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let again = main_sh(root, &args, &[]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        stdout.contains("data set: data/cifar-10-batches-bin"),
        "{stdout}"
    );
}

#[test]
fn the_main_script_offline_with_no_data_says_what_to_do() {
    let checkout = fresh_checkout();
    // Nothing listens on port 9 of the loopback: as good as no network.
    let out = main_sh(
        checkout.path(),
        &[],
        &[("EVO_DATA_BASE_URL", "http://127.0.0.1:9")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("could not download CIFAR-10"), "{stderr}");
    assert!(stderr.contains("data/cifar-10-batches-bin"), "{stderr}");
    assert!(stderr.contains("main.sh DIR"), "{stderr}");
    assert!(!checkout.path().join("runs").exists(), "nothing was run");
}

#[test]
fn the_doctor_checks_every_op_on_the_cpu() {
    let out = ok(evo(&["doctor"]));
    let table = String::from_utf8_lossy(&out.stdout);
    for op in [
        "conv 3x3 s1 3->16",
        "conv 7x7 s4",
        "filter gradient",
        "batch norm + ReLU (training): gradients",
        "reconcile",
        "head (linear) and cross-entropy",
        "batch assembly",
        "SGD update",
        "training 30 steps",
    ] {
        assert!(table.contains(op), "{op} missing:\n{table}");
    }
    assert!(!table.contains("FAIL"), "{table}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checks passed"), "{stderr}");
    // JSON lines, one per check; an unknown device is an error.
    let out = ok(evo(&["doctor", "--json"]));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 25);
    assert!(lines.iter().all(|c| c["passed"] == true));
    let out = evo(&["doctor", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tpu"));
}
