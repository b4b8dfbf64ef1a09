//! `evo genome ...`: mutation walks, summaries and pictures of genomes, reference nets.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use genome::{walk, Genome, InputShape, Limits, ReferenceNet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Subcommands of `evo genome`.
#[derive(Subcommand)]
pub enum GenomeCommand {
    /// From the initial individual, apply N reproductions (each child the next parent),
    /// validate every child, and print a JSON summary.
    Walk {
        /// Seed of the walk.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Number of reproductions.
        #[arg(long, default_value_t = 1000)]
        steps: u64,
        /// Mutations per reproduction.
        #[arg(long, default_value_t = 1)]
        mutations: usize,
        /// Write every child as a JSON line to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a readable summary of a genome JSON file, or its Graphviz DOT; or draw it.
    Show {
        /// Genome JSON file.
        file: PathBuf,
        /// Print Graphviz DOT instead of the summary.
        #[arg(long)]
        dot: bool,
        /// Also draw the architecture as an SVG picture into this file (no Graphviz
        /// needed).
        #[arg(long, value_name = "OUT")]
        svg: Option<PathBuf>,
    },
    /// Print a reference net of the speed benchmark as genome JSON.
    Reference {
        /// linear, small, mid or large.
        net: ReferenceNet,
        /// Number of classes.
        #[arg(long, default_value_t = 10)]
        classes: u32,
    },
    /// Print the initial individual (a linear classifier on pixels) as genome JSON.
    Initial {
        /// Image height and width.
        #[arg(long, default_value_t = 32)]
        side: u32,
        /// Image channels.
        #[arg(long, default_value_t = 3)]
        channels: u32,
        /// Number of classes.
        #[arg(long, default_value_t = 10)]
        classes: u32,
    },
}

/// Reads and validates a genome JSON file.
pub fn read_genome(path: &Path) -> Result<Genome> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > genome::codec::MAX_JSON_BYTES as u64 {
        bail!(
            "{}: {} bytes is larger than a genome can be ({} bytes)",
            path.display(),
            meta.len(),
            genome::codec::MAX_JSON_BYTES
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Genome::from_json(&text, &Limits::default())
        .with_context(|| format!("{} is not a valid genome", path.display()))
}

/// Runs one `evo genome` subcommand.
pub fn run(cmd: GenomeCommand) -> Result<ExitCode> {
    match cmd {
        GenomeCommand::Walk {
            seed,
            steps,
            mutations,
            out,
        } => {
            let start = Instant::now();
            let mut writer = match &out {
                Some(p) => Some(BufWriter::new(
                    File::create(p).with_context(|| format!("creating {}", p.display()))?,
                )),
                None => None,
            };
            let mut write_error = None;
            let report = walk(seed, steps, mutations.max(1), &Limits::default(), |step| {
                if let (Some(w), None) = (writer.as_mut(), &write_error) {
                    let line = serde_json::to_string(step).expect("walk steps serialize");
                    if let Err(e) = writeln!(w, "{line}") {
                        write_error = Some(e);
                    }
                }
            })?;
            if let Some(e) = write_error {
                return Err(e).context("writing the walk's JSON lines");
            }
            if let Some(mut w) = writer {
                w.flush().context("writing the walk's JSON lines")?;
            }
            let mut json = serde_json::to_value(&report)?;
            json["seed"] = seed.into();
            json["seconds"] = start.elapsed().as_secs_f64().into();
            println!("{json}");
            Ok(if report.invalid == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        GenomeCommand::Show { file, dot, svg } => {
            let g = read_genome(&file)?;
            let analysis = g.validate()?;
            if dot {
                print!("{}", g.to_dot(Some(&analysis)));
            } else {
                print!("{}", g.summary(&analysis));
            }
            if let Some(out) = svg {
                std::fs::write(&out, g.to_svg(Some(&analysis)))
                    .with_context(|| format!("writing {}", out.display()))?;
                eprintln!("drew the architecture into {}", out.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        GenomeCommand::Reference { net, classes } => {
            println!("{}", net.genome(InputShape::CIFAR, classes).to_json());
            Ok(ExitCode::SUCCESS)
        }
        GenomeCommand::Initial {
            side,
            channels,
            classes,
        } => {
            let g = Genome::initial(
                InputShape {
                    height: side,
                    width: side,
                    channels,
                },
                classes,
            );
            g.validate()
                .context("that initial genome is outside the limits")?;
            println!("{}", g.to_json());
            Ok(ExitCode::SUCCESS)
        }
    }
}
