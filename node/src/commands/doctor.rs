//! `evo doctor`: opens a device, runs every op the trainer uses on it against a reference
//! within stated tolerances (`trainer::doctor`), trains a small genome for a few steps,
//! and prints a table: op, max error, tolerance, pass, time. Exits non-zero if any check
//! fails. On a CPU build it checks the fast CPU ops against candle's stock ones.

use anyhow::{Context, Result};
use clap::Args;
use std::process::ExitCode;

/// Options of `evo doctor`.
#[derive(Args)]
pub struct DoctorArgs {
    /// The device to check: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print the checks as JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs `evo doctor`.
pub fn run(args: DoctorArgs) -> Result<ExitCode> {
    let device = trainer::device::open(&args.device)
        .with_context(|| format!("opening the device {:?}", args.device))?;
    let checks =
        trainer::threads::run(|| trainer::doctor::run(&device)).context("running the checks")?;
    if args.json {
        for c in &checks {
            println!("{}", serde_json::to_string(c)?);
        }
    } else {
        println!("device: {}", trainer::device::describe(&device));
        print!("{}", trainer::doctor::table(&checks));
    }
    let failed = checks.iter().filter(|c| !c.passed).count();
    if failed > 0 {
        eprintln!("{failed} of {} checks failed", checks.len());
        Ok(ExitCode::FAILURE)
    } else {
        eprintln!("all {} checks passed", checks.len());
        Ok(ExitCode::SUCCESS)
    }
}
