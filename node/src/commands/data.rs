//! `evo data ...`: download data sets.

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use trainer::fetch::{fetch, Archive, FetchOptions};

/// Subcommands of `evo data`.
#[derive(Subcommand)]
pub enum DataCommand {
    /// Download an official archive (cifar10 or cifar100), check its checksum and unpack it.
    Fetch {
        /// cifar10 or cifar100.
        archive: Archive,
        /// Folder to unpack into.
        #[arg(long, default_value = "data")]
        dir: PathBuf,
        /// Download from this base URL instead of the official one (a mirror).
        #[arg(long)]
        base_url: Option<String>,
        /// Expected MD5 instead of the official archive's (for a mirror's own archive).
        #[arg(long)]
        md5: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

/// Runs one `evo data` subcommand.
pub fn run(cmd: DataCommand) -> Result<()> {
    match cmd {
        DataCommand::Fetch {
            archive,
            dir,
            base_url,
            md5,
            quiet,
        } => {
            let options = FetchOptions {
                base_url,
                progress: !quiet,
                expected_md5: md5,
            };
            let folder = fetch(archive, &dir, &options)
                .with_context(|| format!("fetching {} into {}", archive.folder(), dir.display()))?;
            println!("{}", folder.display());
            Ok(())
        }
    }
}
