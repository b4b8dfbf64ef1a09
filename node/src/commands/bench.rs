//! `evo bench train`: the speed benchmark of the reference nets.

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
}

/// Runs one `evo bench` subcommand.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Train(args) => {
            let device = trainer::device::open(&args.device)?;
            let length = match args.steps {
                Some(n) => BenchLength::Steps(n),
                None => BenchLength::Seconds(args.seconds),
            };
            trainer::profile::set_enabled(args.profile);
            for net in args.net {
                let report = trainer::threads::run(|| {
                    bench(net, &device, args.batch.max(1), length, args.stock_ops)
                })?;
                println!("{}", serde_json::to_string(&report)?);
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
