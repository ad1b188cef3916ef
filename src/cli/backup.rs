//! `sphere backup DIR` (consistent while the server runs) and `sphere restore DIR`.

use std::path::PathBuf;

use clap::Args;

use crate::config::Config;
use crate::ops::backup;

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// A new (or empty) folder to write the backup into. It holds signing keys: keep it private.
    pub target: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A folder written by `sphere backup`.
    pub backup: PathBuf,
    /// Replace an existing event log in the data directory (stop the server first).
    #[arg(long)]
    pub force: bool,
}

pub fn run_backup(config: &Config, args: &BackupArgs) -> anyhow::Result<()> {
    if !config.embedded_log() {
        anyhow::bail!("backup copies the embedded log; back up KurrentDB with its own tools");
    }
    let manifest = backup::backup(&config.data_dir, &args.target)?;
    println!(
        "backed up {} events (head {}) to {}",
        manifest.events,
        manifest.head,
        args.target.display()
    );
    Ok(())
}

pub fn run_restore(config: &Config, args: &RestoreArgs) -> anyhow::Result<()> {
    let manifest = backup::restore(&args.backup, &config.data_dir, args.force)?;
    println!(
        "restored {} events (head {}) into {}; projections rebuild at the next start",
        manifest.events,
        manifest.head,
        config.data_dir.display()
    );
    Ok(())
}
