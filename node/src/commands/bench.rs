//! `evo bench train`: the speed benchmark of the reference nets; `evo bench search`
//! (in [`super::search`]): the search benchmark.

use anyhow::Result;
use clap::{Args, Subcommand};
use genome::ReferenceNet;
use trainer::bench::{bench, BenchLength};

/// Subcommands of `evo bench`.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Train a reference net on random in-memory data, as torch_reference.py does, and
    /// print steps/s and images/s as a JSON line.
    Train(BenchTrainArgs),
    /// The search benchmark: K seeds of a config for M minutes, each run pinned to
    /// cores of its own, beside reference nets trained for the same time and islands;
    /// prints the best accuracy over time and writes summary.json and a plot.
    Search(super::search::SearchArgs),
}

/// Options of `evo bench train`.
#[derive(Args)]
pub struct BenchTrainArgs {
    /// linear, small, mid or large (repeat for several; one JSON line each).
    #[arg(long, required = true)]
    net: Vec<ReferenceNet>,
    /// Timed steps (instead of --seconds).
    #[arg(long, conflicts_with = "seconds")]
    steps: Option<u64>,
    /// Timed seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Images per step.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also print where a step's time goes, per operation.
    #[arg(long)]
    profile: bool,
    /// Use candle's stock convolution and batch norm (the speed before the fast ops).
    #[arg(long)]
    stock_ops: bool,
    /// Train this many copies at once, as a node's workers do, and report their sum
    /// (`steps_per_s` and the like) and each copy's `steps_per_s` (`concurrent_steps_per_s`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrent: u16,
    /// Threads of the CPU training pool (0: one per core), as `node.threads`.
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Runs one `evo bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Search(args) => super::search::run(args),
        BenchCommand::Train(args) => {
            let device = trainer::device::open(&args.device)?;
            let length = match args.steps {
                Some(n) => BenchLength::Steps(n),
                None => BenchLength::Seconds(args.seconds),
            };
            trainer::threads::configure(args.threads);
            trainer::profile::set_enabled(args.profile);
            let batch = args.batch.max(1);
            for net in args.net {
                // One OS thread per copy, as a node's workers; each trains in a pool of
                // its own with an equal share of the threads.
                let threads =
                    trainer::threads::share(trainer::threads::count(), args.concurrent.into());
                let one = || {
                    trainer::threads::run_alone(threads, || {
                        bench(net, &device, batch, length, args.stock_ops)
                    })
                };
                let reports = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..args.concurrent).map(|_| s.spawn(one)).collect();
                    handles
                        .into_iter()
                        .map(|h| match h.join() {
                            Ok(r) => Ok(r?),
                            Err(_) => Err(anyhow::anyhow!("a copy panicked")),
                        })
                        .collect::<Result<Vec<_>>>()
                })?;
                let mut line = serde_json::to_value(&reports[0])?;
                if reports.len() > 1 {
                    let sum = |f: fn(&trainer::bench::BenchReport) -> f64| {
                        reports.iter().map(f).sum::<f64>()
                    };
                    line["steps_per_s"] = sum(|r| r.steps_per_s).into();
                    line["images_per_s"] = sum(|r| r.images_per_s).into();
                    line["train_gflops"] = sum(|r| r.train_gflops).into();
                    line["steps"] = reports.iter().map(|r| r.steps).sum::<u64>().into();
                    line["concurrent_steps_per_s"] = reports
                        .iter()
                        .map(|r| r.steps_per_s)
                        .collect::<Vec<_>>()
                        .into();
                }
                line["concurrent"] = reports.len().into();
                line["threads"] = trainer::threads::count().into();
                println!("{line}");
                let report = &reports[0];
                if let Some(lines) = &report.profile {
                    eprintln!("{} on {}: ms per step", report.net, report.device);
                    for l in lines {
                        eprintln!(
                            "  {:>9.3}  {:>5.1}x  {}",
                            l.ms_per_step, l.calls_per_step, l.name
                        );
                    }
                }
            }
            Ok(())
        }
    }
}
