//! `sphere rebuild <projection>|all`: drop a projection and replay the log into it, with a
//! progress bar (events/s and ETA). Run it with the server stopped; a running server rebuilds
//! a projection whose files are gone by itself when it starts.

use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::app::open_log;
use crate::config::Config;
use crate::projection::{self, runner};

#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The projection to rebuild, or `all`.
    #[arg(value_name = "PROJECTION")]
    pub projection: String,
}

pub async fn run(config: Config, args: &RebuildArgs) -> anyhow::Result<()> {
    let names: Vec<&str> = if args.projection == "all" {
        projection::NAMES.to_vec()
    } else if projection::NAMES.contains(&args.projection.as_str()) {
        vec![args.projection.as_str()]
    } else {
        anyhow::bail!(
            "no projection named {:?}; known: {}, or all",
            args.projection,
            projection::NAMES.join(", ")
        );
    };
    let log = open_log(&config).await?;
    for name in names {
        let mut target = projection::open(name, &config)?;
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {percent:>3}% {msg} (ETA {eta})")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(name.to_owned());
        let started = Instant::now();
        let events = runner::rebuild(&*log, &mut target, |p| {
            bar.set_length(p.head.0);
            bar.set_position(p.position.0);
            let rate = p.events as f64 / started.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!("{} events, {:.0} events/s", p.events, rate));
        })
        .await?;
        bar.finish();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "rebuilt {name}: {events} events in {secs:.2}s ({:.0} events/s)",
            events as f64 / secs.max(1e-3)
        );
    }
    log.close().await?;
    Ok(())
}
