//! `evo`: evolve image classifiers. This file parses the command line and dispatches to
//! one module per command group in [`commands`].

mod commands;

/// Training allocates and frees the same large buffers every step: mimalloc keeps them
/// instead of returning them to the kernel (and faulting them in again) as glibc does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Evolve image classifiers from trivial beginnings (Real et al., ICML 2017).
#[derive(Parser)]
#[command(name = "evo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect and exercise genomes.
    #[command(subcommand)]
    Genome(commands::genome::GenomeCommand),
    /// Train one individual and print its scores as a JSON line.
    Train(commands::train::TrainArgs),
    /// Check every op the trainer uses on a device against a reference.
    Doctor(commands::doctor::DoctorArgs),
    /// Speed benchmarks.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Data sets.
    #[command(subcommand)]
    Data(commands::data::DataCommand),
    /// Run an experiment (or resume one from its state directory) until a stop
    /// condition is met.
    Run(commands::run::RunArgs),
    /// A running node's status, from its HTTP endpoint.
    Status(commands::status::StatusArgs),
    /// Copy the best individuals of a run out of its state directory.
    Export(commands::export::ExportArgs),
    /// Test accuracy of an exported model, or of an ensemble of the top K.
    Evaluate(commands::evaluate::EvaluateArgs),
    /// Plots, the best architecture and a summary of an experiment, from its state
    /// directory.
    Report(commands::report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(commands::run::dotted_flags(std::env::args().collect()));
    let result = match cli.command {
        Command::Genome(cmd) => commands::genome::run(cmd),
        Command::Train(args) => commands::train::run(args).map(|()| ExitCode::SUCCESS),
        Command::Doctor(args) => commands::doctor::run(args),
        Command::Bench(cmd) => commands::bench::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Data(cmd) => commands::data::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => commands::run::run(args),
        Command::Status(args) => commands::status::run(args).map(|()| ExitCode::SUCCESS),
        Command::Export(args) => commands::export::run(args).map(|()| ExitCode::SUCCESS),
        Command::Evaluate(args) => commands::evaluate::run(args).map(|()| ExitCode::SUCCESS),
        Command::Report(args) => commands::report::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
