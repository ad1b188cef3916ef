//! `sphere import [--strict] PATH...`: FHIR Bundles and NDJSON into the log through the API's
//! write path (see [`crate::import`]), with a progress bar, a report of every rejected resource
//! (file, line, FHIRPath, message) and a summary.
//!
//! With the server stopped, the import also runs the projections and returns once the search
//! index has caught up. With a server running on the same data directory (its search index is
//! locked), the import writes to the log only and the server's projections index it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::{open_log, App};
use crate::config::Config;
use crate::import::{self, Options, Progress, Report, Target};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Files or folders: transaction/batch/collection Bundles (`.json`) and NDJSON (`.ndjson`).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Stop at the first rejected resource (what was already written stays).
    #[arg(long)]
    pub strict: bool,
}

/// The progress bar runs on input bytes (so the ETA is known up front) and shows resources.
struct Bar {
    bar: ProgressBar,
    resources: AtomicU64,
}

impl Progress for Bar {
    fn advance(&self, bytes: u64, resources: u64) {
        let done = self.resources.fetch_add(resources, Ordering::Relaxed) + resources;
        self.bar.inc(bytes);
        self.bar.set_message(done.to_string());
    }
}

pub async fn run(config: Config, args: &ImportArgs) -> anyhow::Result<()> {
    let files = import::collect_files(&args.paths)?;
    if files.is_empty() {
        anyhow::bail!("no .json, .ndjson or .jsonl files under the given paths");
    }
    let total: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let options = Options {
        strict: args.strict,
    };
    let started = Instant::now();
    // The projections run beside the import when nothing else holds them.
    let (app, log) = match App::start(config.clone()).await {
        Ok(app) => {
            let log = app.log.clone();
            (Some(app), log)
        }
        Err(e) => {
            eprintln!(
                "note: not indexing here ({e}); a server running on this data directory indexes what is imported"
            );
            (None, open_log(&config).await?)
        }
    };
    let target = Target {
        log: log.as_ref(),
        app: app.as_deref(),
    };
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:40}] {percent:>3}% {msg} resources, {per_sec} (ETA {eta})",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_message("0");
    let progress = Bar {
        bar,
        resources: AtomicU64::new(0),
    };
    let report = import::import_files(target, &files, options, &progress).await?;
    progress.bar.finish_and_clear();
    let written = started.elapsed();
    print_report(&report, written);
    if let (Some(app), Some(position)) = (&app, report.last_position) {
        let indexing = Instant::now();
        for handle in app.projections() {
            loop {
                match handle.wait_for(position, Duration::from_secs(5)).await {
                    Ok(()) => break,
                    Err(crate::projection::WaitError::Timeout { .. }) => continue,
                    Err(e) => anyhow::bail!("{e}"),
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "projections caught up {:.2}s after the last write; {:.0} resources/s end to end",
            indexing.elapsed().as_secs_f64(),
            report.resources as f64 / secs.max(1e-3)
        );
    }
    match &app {
        Some(app) => app.shutdown().await,
        None => log.close().await?,
    }
    if report.stopped {
        anyhow::bail!("stopped at the first rejected resource (--strict)");
    }
    if report.rejected > 0 {
        anyhow::bail!(
            "{} resources were rejected (listed above); the rest were imported",
            report.rejected
        );
    }
    Ok(())
}

fn print_report(report: &Report, elapsed: Duration) {
    for problem in &report.problems {
        eprintln!("rejected: {problem}");
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "imported {} files: {} resources in {:.2}s ({:.0} resources/s): {} created, {} updated, {} unchanged, {} rejected",
        report.files,
        report.resources,
        secs,
        report.resources as f64 / secs.max(1e-3),
        report.created,
        report.updated,
        report.unchanged,
        report.rejected
    );
}
