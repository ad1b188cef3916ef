//! `sphere log tail|read|stats`: operators and auditors inspect the log itself.

use clap::{Args, Subcommand};

use crate::app::open_log;
use crate::config::Config;
use crate::eventlog::{
    Direction, EventFilter, EventLog, Position, RecordedEvent, StreamStart, SubscriptionMessage,
};

#[derive(Debug, Args)]
pub struct LogArgs {
    #[command(subcommand)]
    pub command: LogCommand,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// The newest events of `$all`; with --follow, then every new one as it is committed.
    Tail {
        /// How many recent events to show first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// Keep printing new events.
        #[arg(short, long)]
        follow: bool,
        /// Only these stream categories (e.g. Patient, grant, audit); repeatable.
        #[arg(long = "category")]
        categories: Vec<String>,
        /// NDJSON with the event bodies instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Every event of one stream, e.g. `Patient-123`.
    Read {
        stream: String,
        /// Newest first.
        #[arg(long)]
        backwards: bool,
        #[arg(long)]
        json: bool,
    },
    /// Totals: events, streams, per category.
    Stats {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: Config, args: &LogArgs) -> anyhow::Result<()> {
    let log = open_log(&config).await?;
    let outcome = match &args.command {
        LogCommand::Tail {
            lines,
            follow,
            categories,
            json,
        } => tail(&*log, *lines, *follow, categories, *json).await,
        LogCommand::Read {
            stream,
            backwards,
            json,
        } => read(&*log, stream, *backwards, *json).await,
        LogCommand::Stats { json } => stats(&config, *json).await,
    };
    log.close().await?;
    outcome
}

fn print_event(event: &RecordedEvent, json: bool) {
    if json {
        let data: serde_json::Value = event
            .json()
            .unwrap_or_else(|_| serde_json::Value::String("<not JSON>".into()));
        let line = serde_json::json!({
            "position": event.position.0,
            "stream": event.stream,
            "revision": event.revision,
            "eventId": event.event_id.to_string(),
            "type": event.event_type,
            "committed": crate::fhir::store::instant(event.commit_ms()),
            "metadata": event.metadata,
            "data": data,
        });
        println!("{line}");
    } else {
        let actor = event
            .metadata
            .actor
            .as_ref()
            .map(|a| {
                [a.client_id.as_deref(), a.user.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        println!(
            "{:>10}  {}  {}@{}  {}  {}",
            event.position.0,
            crate::fhir::store::instant(event.commit_ms()),
            event.stream,
            event.revision,
            event.event_type,
            actor
        );
    }
}

async fn tail(
    log: &dyn EventLog,
    lines: usize,
    follow: bool,
    categories: &[String],
    json: bool,
) -> anyhow::Result<()> {
    let filter = EventFilter::categories(categories.iter().cloned());
    // Positions are dense in the embedded log and ordered in every log, so a window that
    // ends at the head and is widened until it holds enough events finds the newest ones.
    let head = log.head().await?.map(|p| p.0).unwrap_or(0);
    let mut window = (lines as u64).max(1) * 4;
    let recent = loop {
        let start = head.saturating_sub(window);
        let after = (start > 0).then_some(Position(start));
        let mut events = Vec::new();
        let mut cursor = after;
        loop {
            let page = log.read_all(cursor, &filter, 10_000).await?;
            let done = page.len() < 10_000;
            cursor = page.last().map(|e| e.position).or(cursor);
            events.extend(page.into_iter().filter(|e| e.position.0 <= head));
            if done || cursor.map(|c| c.0 >= head).unwrap_or(false) {
                break;
            }
        }
        if events.len() >= lines || start == 0 {
            let skip = events.len().saturating_sub(lines);
            break events.split_off(skip);
        }
        window = window.saturating_mul(8);
    };
    for event in &recent {
        print_event(event, json);
    }
    if follow {
        let mut subscription = log
            .subscribe((head > 0).then_some(Position(head)), filter)
            .await?;
        while let Some(message) = subscription.next().await {
            if let SubscriptionMessage::Event(event) = message? {
                print_event(&event, json);
            }
        }
    }
    Ok(())
}

async fn read(log: &dyn EventLog, stream: &str, backwards: bool, json: bool) -> anyhow::Result<()> {
    let direction = if backwards {
        Direction::Backwards
    } else {
        Direction::Forwards
    };
    let mut start = StreamStart::Origin;
    let mut shown = 0usize;
    loop {
        let page = log.read_stream(stream, direction, start, 1000).await?;
        let Some(last) = page.last().map(|e| e.revision) else {
            break;
        };
        for event in &page {
            print_event(event, json);
        }
        shown += page.len();
        if page.len() < 1000 {
            break;
        }
        start = match direction {
            Direction::Forwards => StreamStart::Revision(last + 1),
            Direction::Backwards if last == 0 => break,
            Direction::Backwards => StreamStart::Revision(last - 1),
        };
    }
    if shown == 0 {
        anyhow::bail!("stream {stream} does not exist");
    }
    Ok(())
}

async fn stats(config: &Config, json: bool) -> anyhow::Result<()> {
    if !config.embedded_log() {
        anyhow::bail!("log stats reads the embedded log; for KurrentDB use its own statistics");
    }
    let log = crate::eventlog::sqlite::SqliteLog::open(&config.data_dir)?;
    let stats = log.stats().await?;
    log_close(&log).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!("events:  {}", stats.events);
    println!("streams: {}", stats.streams);
    println!(
        "head:    {}",
        stats.head.map(|p| p.to_string()).unwrap_or("-".into())
    );
    if let (Some(first), Some(last)) = (stats.first_commit_ms, stats.last_commit_ms) {
        println!(
            "commits: {} .. {}",
            crate::fhir::store::instant(first),
            crate::fhir::store::instant(last)
        );
    }
    println!("{:<24} {:>10} {:>12}", "category", "streams", "events");
    for c in &stats.categories {
        println!("{:<24} {:>10} {:>12}", c.category, c.streams, c.events);
    }
    Ok(())
}

async fn log_close(log: &crate::eventlog::sqlite::SqliteLog) {
    let _ = EventLog::close(log).await;
}
