//! Timings of the fast ops against stock candle on the `mid` reference net's layers at
//! batch 50 (ignored by default; run with
//! `cargo test --release -p trainer -j2 ops::bench -- --ignored --nocapture --test-threads=1`).
//!
//! Knobs (environment): `OPS_BENCH_REPS` (best of, default 3), `OPS_BENCH_LAYER` (index of
//! one layer), `OPS_BENCH_PATH=gemm` (the portable path), `OPS_BENCH_STOCK=0` (skip stock
//! candle), `OPS_BENCH_ONLY=fwd|dx|dw` (one pass, for profilers), `OPS_BENCH_CPU=1` (CPU
//! time instead of wall time, for a loaded machine).

use super::conv::{backward_input, backward_weight, forward, Geom, Path};
use super::*;
use candle_core::{Device, Var};
use rand::{Rng, SeedableRng};
use std::time::Instant;

fn random(dims: &[usize], seed: u64) -> Tensor {
    let n: usize = dims.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

/// CPU time of all this process's threads, in nanoseconds (from /proc; 0 if unreadable).
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Best wall time in milliseconds of `reps` runs of `f`, after one warm-up run. With
/// `OPS_BENCH_CPU=1`, CPU time of the whole process instead (robust to other load on the
/// machine: GFLOP per CPU-second).
fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    let cpu = std::env::var("OPS_BENCH_CPU").as_deref() == Ok("1");
    f();
    (0..reps)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_ns());
            f();
            if cpu {
                (cpu_ns() - c) as f64 / 1e6
            } else {
                t.elapsed().as_secs_f64() * 1e3
            }
        })
        .fold(f64::INFINITY, f64::min)
}

fn gflops(flop: f64, ms: f64) -> f64 {
    flop / ms / 1e6
}

fn slice(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
#[ignore]
fn bench_conv_mid_layers() {
    let b = 50;
    let reps: usize = std::env::var("OPS_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "layer (GFLOP/s)", "fwd", "bwd dx", "bwd dw", "bwd", "stock fwd", "dx", "dw", "bwd"
    );
    for &(cin, cout, hw, stride) in [
        (64, 64, 32, 1),
        (128, 128, 16, 1),
        (256, 256, 8, 1),
        (64, 128, 32, 2),
        (128, 256, 16, 2),
    ]
    .iter()
    .enumerate()
    .filter(|(i, _)| {
        std::env::var("OPS_BENCH_LAYER")
            .map(|l| l == i.to_string())
            .unwrap_or(true)
    })
    .map(|(_, l)| l)
    {
        let x = random(&[b, cin, hw, hw], 1);
        let w = random(&[cout, cin, 3, 3], 2);
        let g = Geom::new(x.dims(), w.dims(), stride).unwrap();
        let dy = random(&[b, cout, g.ho, g.wo], 3);
        let flop = 2.0 * (cin * cout * 9 * g.ho * g.wo * b) as f64;
        let (xs, ws, dys) = (slice(&x), slice(&w), slice(&dy));
        let path = match std::env::var("OPS_BENCH_PATH").as_deref() {
            Ok("gemm") => Path::Gemm,
            _ => Path::best(),
        };

        // OPS_BENCH_ONLY=fwd|dx|dw runs one pass only (for `perf stat`).
        let only = std::env::var("OPS_BENCH_ONLY").unwrap_or_default();
        if only == "none" {
            continue;
        }
        if !only.is_empty() {
            let t = time_ms(reps, || match only.as_str() {
                "fwd" => drop(std::hint::black_box(forward(&xs, &ws, &g, path))),
                "dx" => drop(std::hint::black_box(backward_input(&dys, &ws, &g, path))),
                _ => drop(std::hint::black_box(backward_weight(&xs, &dys, &g, path))),
            });
            println!(
                "{cin}->{cout} {hw}x{hw} s{stride} {only}: {:.1} GFLOP/s",
                gflops(flop, t)
            );
            continue;
        }
        let f = time_ms(reps, || {
            std::hint::black_box(forward(&xs, &ws, &g, path));
        });
        let bx = time_ms(reps, || {
            std::hint::black_box(backward_input(&dys, &ws, &g, path));
        });
        let bw = time_ms(reps, || {
            std::hint::black_box(backward_weight(&xs, &dys, &g, path));
        });

        if std::env::var("OPS_BENCH_STOCK").as_deref() == Ok("0") {
            println!(
                "{:<22} {:>9.1} {:>9.1} {:>9.1} {:>9.1} | ms {f:.2} {bx:.2} {bw:.2}",
                format!("{cin}->{cout} {hw}x{hw} s{stride}"),
                gflops(flop, f),
                gflops(flop, bx),
                gflops(flop, bw),
                gflops(2.0 * flop, bx + bw),
            );
            continue;
        }
        let sf = time_ms(reps, || {
            std::hint::black_box(x.conv2d(&w, 1, stride, 1, 1).unwrap());
        });
        // What candle's backprop runs for Op::Conv2D.
        let out_size = (g.ho - 1) * stride + 3 - 2;
        let sbx = time_ms(reps, || {
            std::hint::black_box(
                dy.conv_transpose2d(&w, 1, hw - out_size, stride, 1)
                    .unwrap(),
            );
        });
        let sbw = time_ms(reps, || {
            let gk = x
                .transpose(0, 1)
                .unwrap()
                .conv2d(&dy.transpose(0, 1).unwrap(), 1, stride, 1, 1)
                .unwrap()
                .transpose(0, 1)
                .unwrap();
            std::hint::black_box(gk.narrow(2, 0, 3).unwrap().narrow(3, 0, 3).unwrap());
        });
        println!(
            "{:<22} {:>9.1} {:>9.1} {:>9.1} {:>9.1} | {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            format!("{cin}->{cout} {hw}x{hw} s{stride}"),
            gflops(flop, f),
            gflops(flop, bx),
            gflops(flop, bw),
            gflops(2.0 * flop, bx + bw),
            gflops(flop, sf),
            gflops(flop, sbx),
            gflops(flop, sbw),
            gflops(2.0 * flop, sbx + sbw),
        );
        println!(
            "{:<22} {:>9.2} {:>9.2} {:>9.2} {:>9.2} | {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            "  (ms)",
            f,
            bx,
            bw,
            bx + bw,
            sf,
            sbx,
            sbw,
            sbx + sbw
        );
    }
}

#[test]
#[ignore]
fn bench_bn_relu_mid_layers() {
    let b = 50;
    let reps = 5;
    // Each fwd+bwd runs `(y * r).sum_all().backward()`; `loss` is that alone on `x`, the
    // part of fwd+bwd that is not batch norm.
    println!(
        "{:<16} {:>10} {:>10} | {:>10} {:>10} | {:>10}",
        "layer (ms)", "fwd", "fwd+bwd", "stock fwd", "fwd+bwd", "loss"
    );
    for &(c, hw) in &[(64, 32), (128, 16), (256, 8)] {
        let x = Var::from_tensor(&random(&[b, c, hw, hw], 1)).unwrap();
        let gamma = Var::from_tensor(&random(&[c], 2).affine(0.5, 1.0).unwrap()).unwrap();
        let beta = Var::from_tensor(&random(&[c], 3)).unwrap();
        let r = random(&[b, c, hw, hw], 4);
        let (xt, gt, bt) = (x.as_tensor(), gamma.as_tensor(), beta.as_tensor());
        let stock = |x: &Tensor| {
            let mean = x.mean_keepdim((0, 2, 3)).unwrap();
            let centered = x.broadcast_sub(&mean).unwrap();
            let var = centered.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
            let scale = (var + 1e-5)
                .unwrap()
                .sqrt()
                .unwrap()
                .recip()
                .unwrap()
                .broadcast_mul(&gt.reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            centered
                .broadcast_mul(&scale)
                .unwrap()
                .broadcast_add(&bt.reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .relu()
                .unwrap()
        };
        let f = time_ms(reps, || {
            std::hint::black_box(bn_relu_train(xt, gt, bt, 1e-5).unwrap());
        });
        let fb = time_ms(reps, || {
            let (y, _, _) = bn_relu_train(xt, gt, bt, 1e-5).unwrap();
            std::hint::black_box((y * &r).unwrap().sum_all().unwrap().backward().unwrap());
        });
        if std::env::var("OPS_BENCH_STOCK").as_deref() == Ok("0") {
            println!(
                "{:<16} {:>10.2} {:>10.2}",
                format!("{c}ch {hw}x{hw}"),
                f,
                fb
            );
            continue;
        }
        let sf = time_ms(reps, || {
            std::hint::black_box(stock(xt));
        });
        let sfb = time_ms(reps, || {
            let y = stock(xt);
            std::hint::black_box((y * &r).unwrap().sum_all().unwrap().backward().unwrap());
        });
        let loss = time_ms(reps, || {
            std::hint::black_box((xt * &r).unwrap().sum_all().unwrap().backward().unwrap());
        });
        println!(
            "{:<16} {:>10.2} {:>10.2} | {:>10.2} {:>10.2} | {:>10.2}",
            format!("{c}ch {hw}x{hw}"),
            f,
            fb,
            sf,
            sfb,
            loss
        );
    }
}

#[test]
#[ignore]
fn bench_raw_gemm() {
    use super::gemm::{sgemm, Mat};
    // (m, n, k): square, then the per-image shapes of the mid net's 64-channel layer.
    for &(m, n, k) in &[
        (1024, 1024, 1024),
        (64, 1024, 576),
        (64, 96, 576),
        (64, 576, 1024),
        (576, 1024, 64),
        (256, 64, 2304),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let flop = 2.0 * (m * n * k) as f64;
        let reps = (2e10 / flop).clamp(3.0, 200.0) as usize;
        let mut run = |threads: usize| {
            time_ms(3, || {
                for _ in 0..reps {
                    sgemm(
                        m,
                        n,
                        k,
                        &mut c,
                        n,
                        1,
                        false,
                        Mat {
                            data: &a,
                            rs: k,
                            cs: 1,
                        },
                        Mat {
                            data: &b,
                            rs: n,
                            cs: 1,
                        },
                        threads,
                    );
                }
            }) / reps as f64
        };
        let one = run(1);
        let two = run(2);
        println!(
            "gemm {m}x{n}x{k}: 1 thread {:.1} GFLOP/s, 2 threads {:.1} GFLOP/s",
            gflops(flop, one),
            gflops(flop, two)
        );
    }
}

/// Peak f32 FMA throughput of one core (12 independent AVX2 accumulators).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_peak(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    let (mut r0, mut r1, mut r2, mut r3) = (a, b, a, b);
    let (mut r4, mut r5, mut r6, mut r7) = (b, a, b, a);
    let (mut r8, mut r9, mut r10, mut r11) = (a, a, b, b);
    for _ in 0..iters {
        r0 = _mm256_fmadd_ps(r0, a, b);
        r1 = _mm256_fmadd_ps(r1, a, b);
        r2 = _mm256_fmadd_ps(r2, a, b);
        r3 = _mm256_fmadd_ps(r3, a, b);
        r4 = _mm256_fmadd_ps(r4, a, b);
        r5 = _mm256_fmadd_ps(r5, a, b);
        r6 = _mm256_fmadd_ps(r6, a, b);
        r7 = _mm256_fmadd_ps(r7, a, b);
        r8 = _mm256_fmadd_ps(r8, a, b);
        r9 = _mm256_fmadd_ps(r9, a, b);
        r10 = _mm256_fmadd_ps(r10, a, b);
        r11 = _mm256_fmadd_ps(r11, a, b);
    }
    let s = [r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10, r11]
        .into_iter()
        .fold(_mm256_setzero_ps(), |s, r| _mm256_add_ps(s, r));
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[test]
#[ignore]
fn bench_fma_peak() {
    if !is_x86_feature_detected!("fma") {
        return;
    }
    let iters = 100_000_000;
    let one = time_ms(2, || {
        // SAFETY: the features were detected above.
        std::hint::black_box(unsafe { fma_peak(std::hint::black_box(iters)) });
    });
    let flop = (iters * 12 * 16) as f64;
    let two = time_ms(2, || {
        rayon::join(
            // SAFETY: as above.
            || std::hint::black_box(unsafe { fma_peak(iters) }),
            || std::hint::black_box(unsafe { fma_peak(iters) }),
        );
    });
    println!(
        "FMA peak: 1 core {:.1} GFLOP/s, 2 cores {:.1} GFLOP/s",
        gflops(flop, one),
        gflops(2.0 * flop, two)
    );
}

/// One image's forward product through the implicit-GEMM kernel, repeated on one thread
/// (hot caches): the kernel's own efficiency.
#[cfg(target_arch = "x86_64")]
#[test]
#[ignore]
fn bench_kernel_single_image() {
    use super::direct::{
        implicit_gemm, pack_a, pack_dy, prepare, weight_grad_tiles, MR, NR, SLACK,
    };
    for &(c, hw) in &[(64usize, 32usize), (128, 16), (256, 8)] {
        let x = slice(&random(&[c, hw, hw], 1));
        let w = slice(&random(&[c, c, 3, 3], 2));
        let (hq, wq) = (hw + 2, hw + 2);
        let mut src = vec![0f32; c * hq * wq + SLACK];
        prepare(&x, c, (hw, hw), 1, (1, 1), (hq, wq), &mut src);
        let koff: Vec<usize> = (0..c * 9)
            .map(|k| (k / 9) * hq * wq + (k % 9 / 3) * wq + k % 3)
            .collect();
        let apack = pack_a(&w, c, c * 9);
        let mut y = vec![0f32; c * hw * hw];
        let flop = 2.0 * (c * c * 9 * hw * hw) as f64;
        let reps = 20;
        let t = time_ms(3, || {
            for _ in 0..reps {
                implicit_gemm(&apack, c, &koff, &src, (hw, hw, wq), &mut y);
            }
        }) / reps as f64;
        let mut dyt = vec![0f32; c.div_ceil(NR) * hw * hw * NR];
        pack_dy(&y, c, hw * hw, &mut dyt);
        let mut tiles = vec![0f32; (c * 9).div_ceil(MR) * c.div_ceil(NR) * MR * NR];
        let tw = time_ms(3, || {
            for _ in 0..reps {
                weight_grad_tiles(&koff, &src, (hw, hw, wq), &dyt, c, &mut tiles);
            }
        }) / reps as f64;
        println!(
            "kernel {c}ch {hw}x{hw}: forward {:.1} GFLOP/s, weight gradient {:.1} GFLOP/s",
            gflops(flop, t),
            gflops(flop, tw)
        );
    }
}
