//! `sphere migrate --from sqlite:DIR --to kurrentdb://...`: copy an embedded log into KurrentDB
//! preserving streams, revisions, event ids and order; resumable; verified at the end.

use clap::Args;

use crate::eventlog::migrate::{migrate_locations, MigrateOptions};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The source log: `sqlite:DIR` or a KurrentDB connection string.
    #[arg(long, value_name = "LOCATION")]
    pub from: String,
    /// The target log: a KurrentDB connection string (or `sqlite:DIR`).
    #[arg(long, value_name = "LOCATION")]
    pub to: String,
    /// Most events of one stream sent in one append.
    #[arg(long, default_value_t = 500)]
    pub max_batch: usize,
}

pub async fn run(args: &MigrateArgs) -> anyhow::Result<()> {
    let options = MigrateOptions {
        progress: true,
        max_batch: args.max_batch,
    };
    let report = migrate_locations(&args.from, &args.to, &options).await?;
    println!(
        "migrated {} events in {} streams ({} copied now, {} already present), {} verified",
        report.source_events,
        report.streams,
        report.copied,
        report.already_present,
        report.verified
    );
    Ok(())
}
