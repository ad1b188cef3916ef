//! `sphere migrate --from sqlite:DIR --to kurrentdb://...`: copies one event log into another,
//! typically the embedded log into KurrentDB when an operator outgrows one machine.
//!
//! What is preserved: stream names, revisions, event ids, event types, bodies (byte for byte),
//! metadata including the original commit time (on KurrentDB; the embedded log stamps its
//! own), and the relative `$all` order. What is not: positions, which belong to each store;
//! projections therefore rebuild from the new log.
//!
//! - **Resumable.** Events are appended in source `$all` order, each stream write with the
//!   exact expected revision the copy implies and the original event ids. Run it again after
//!   an interruption: events the target already holds are skipped, and a half-acknowledged
//!   append is answered by the target's event-id idempotency.
//! - **Verified.** At the end the target is read back in `$all` order and must hold every
//!   source event, with the same stream, revision, id, type, body and metadata, in the same
//!   relative order (events the target held before, in other streams, are ignored).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

use super::kurrentdb::{is_kurrentdb_url, KurrentDbLog};
use super::sqlite::SqliteLog;
use super::{
    EventFilter, EventLog, EventLogError, ExpectedRevision, NewEvent, Position, RecordedEvent,
};

/// Events read from the source per page.
const PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("invalid log location {0:?}: expected sqlite:DIR or kurrentdb://HOST:PORT?...")]
    InvalidLocation(String),
    #[error("source log: {0}")]
    Source(EventLogError),
    #[error("target log: {0}")]
    Target(EventLogError),
    /// The target already holds something else at a place the copy needs.
    #[error(
        "target stream {stream} has diverged from the source at revision {revision}: {detail}"
    )]
    Diverged {
        stream: String,
        revision: u64,
        detail: String,
    },
    #[error("verification failed: {0}")]
    Verification(String),
}

/// How a migration runs.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Most events of one stream sent in one append.
    pub max_batch: usize,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            progress: true,
            max_batch: 500,
        }
    }
}

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Events the source holds.
    pub source_events: u64,
    /// Events appended to the target by this run.
    pub copied: u64,
    /// Events the target already held (an earlier, interrupted run).
    pub already_present: u64,
    /// Streams touched.
    pub streams: u64,
    /// Events checked in the final verification.
    pub verified: u64,
}

/// Opens a log named by a location: `sqlite:DIR` (the embedded log) or a KurrentDB
/// connection string.
pub async fn open_location(location: &str) -> Result<Arc<dyn EventLog>, MigrateError> {
    if let Some(dir) = location.strip_prefix("sqlite:") {
        if dir.is_empty() {
            return Err(MigrateError::InvalidLocation(location.into()));
        }
        let log = SqliteLog::open(std::path::Path::new(dir)).map_err(MigrateError::Source)?;
        Ok(Arc::new(log))
    } else if is_kurrentdb_url(location) {
        let log = KurrentDbLog::connect(location)
            .await
            .map_err(MigrateError::Source)?;
        Ok(Arc::new(log))
    } else {
        Err(MigrateError::InvalidLocation(location.into()))
    }
}

/// `sphere migrate --from FROM --to TO`: opens both logs, copies and verifies.
pub async fn migrate_locations(
    from: &str,
    to: &str,
    options: &MigrateOptions,
) -> Result<MigrationReport, MigrateError> {
    let source = open_location(from).await?;
    let target = open_location(to).await.map_err(|e| match e {
        MigrateError::Source(e) => MigrateError::Target(e),
        other => other,
    })?;
    let report = migrate(&*source, &*target, options).await;
    // Let both logs finish in-flight work before the process exits.
    let _ = target.close().await;
    let _ = source.close().await;
    report
}

/// Copies every event of `source` into `target`, then verifies the copy.
pub async fn migrate(
    source: &dyn EventLog,
    target: &dyn EventLog,
    options: &MigrateOptions,
) -> Result<MigrationReport, MigrateError> {
    let max_batch = options.max_batch.max(1);
    let total = count_events(source).await?;
    let bar = progress_bar(options.progress, total, "copying");
    let mut report = MigrationReport {
        source_events: total,
        ..MigrationReport::default()
    };
    // The target's revision per stream, asked once and then tracked: one round trip saved
    // per append (KurrentDB round trips dominate a migration).
    let mut revisions: HashMap<String, Option<u64>> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = source
            .read_all(cursor, &EventFilter::all(), PAGE)
            .await
            .map_err(MigrateError::Source)?;
        let done = page.len() < PAGE;
        cursor = page.last().map(|e| e.position).or(cursor);
        // Consecutive events of one stream go in one append: order is unchanged.
        let mut run: Vec<RecordedEvent> = Vec::new();
        for event in page {
            let same_stream = run.last().is_some_and(|last| {
                last.stream == event.stream && last.revision + 1 == event.revision
            });
            if !same_stream || run.len() >= max_batch {
                copy_run(
                    target,
                    std::mem::take(&mut run),
                    &mut revisions,
                    &mut report,
                    &bar,
                )
                .await?;
            }
            run.push(event);
        }
        copy_run(target, run, &mut revisions, &mut report, &bar).await?;
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    report.streams = revisions.len() as u64;
    report.verified = verify(source, target, options.progress, total).await?;
    Ok(report)
}

async fn count_events(source: &dyn EventLog) -> Result<u64, MigrateError> {
    let mut count = 0u64;
    let mut cursor = None;
    loop {
        let page = source
            .read_all(cursor, &EventFilter::all(), PAGE)
            .await
            .map_err(MigrateError::Source)?;
        count += page.len() as u64;
        if page.len() < PAGE {
            return Ok(count);
        }
        cursor = page.last().map(|e| e.position);
    }
}

fn progress_bar(show: bool, total: u64, label: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {pos}/{len} events  {per_sec}  ETA {eta}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label);
    bar
}

/// Appends the part of `run` (consecutive events of one stream) the target lacks.
async fn copy_run(
    target: &dyn EventLog,
    run: Vec<RecordedEvent>,
    revisions: &mut HashMap<String, Option<u64>>,
    report: &mut MigrationReport,
    bar: &ProgressBar,
) -> Result<(), MigrateError> {
    let Some(first) = run.first() else {
        return Ok(());
    };
    let stream = first.stream.clone();
    let first_revision = first.revision;
    let current = match revisions.get(&stream) {
        Some(known) => *known,
        None => target
            .stream_revision(&stream)
            .await
            .map_err(MigrateError::Target)?,
    };
    revisions.insert(stream.clone(), current);
    let present = match current {
        None if first_revision == 0 => 0,
        None => {
            return Err(MigrateError::Diverged {
                stream,
                revision: first_revision,
                detail: "the target lacks the stream's earlier events".into(),
            })
        }
        Some(r) if r + 1 < first_revision => {
            return Err(MigrateError::Diverged {
                stream,
                revision: first_revision,
                detail: format!(
                    "the target ends at revision {r}, the source continues at {first_revision}"
                ),
            })
        }
        Some(r) => (r + 1 - first_revision).min(run.len() as u64) as usize,
    };
    report.already_present += present as u64;
    bar.inc(present as u64);
    let missing: Vec<RecordedEvent> = run.into_iter().skip(present).collect();
    let Some(next) = missing.first() else {
        return Ok(());
    };
    let expected = match next.revision {
        0 => ExpectedRevision::NoStream,
        r => ExpectedRevision::Exact(r - 1),
    };
    let count = missing.len() as u64;
    let last_revision = next.revision + count - 1;
    let events = missing
        .into_iter()
        .map(|e| NewEvent {
            event_id: e.event_id,
            event_type: e.event_type,
            data: e.data,
            metadata: e.metadata,
        })
        .collect();
    let written = target
        .append(&stream, expected, events)
        .await
        .map_err(|e| match e {
            EventLogError::WrongExpectedVersion { actual, .. } => MigrateError::Diverged {
                stream: stream.clone(),
                revision: last_revision + 1 - count,
                detail: format!(
                    "another writer changed the stream during the copy (now at {actual:?})"
                ),
            },
            other => MigrateError::Target(other),
        })?;
    if written.next_revision != last_revision {
        return Err(MigrateError::Diverged {
            stream,
            revision: last_revision,
            detail: format!(
                "the copy ended at revision {} instead of {last_revision}",
                written.next_revision
            ),
        });
    }
    revisions.insert(stream, Some(last_revision));
    report.copied += count;
    bar.inc(count);
    Ok(())
}

/// Walks source and target `$all` side by side; returns the number of events checked.
async fn verify(
    source: &dyn EventLog,
    target: &dyn EventLog,
    progress: bool,
    total: u64,
) -> Result<u64, MigrateError> {
    let bar = progress_bar(progress, total, "verifying");
    let mut ids: HashSet<Uuid> = HashSet::with_capacity(total as usize);
    let mut cursor = None;
    loop {
        let page = source
            .read_all(cursor, &EventFilter::all(), PAGE)
            .await
            .map_err(MigrateError::Source)?;
        ids.extend(page.iter().map(|e| e.event_id));
        if page.len() < PAGE {
            break;
        }
        cursor = page.last().map(|e| e.position);
    }
    let mut source_pages = Pager::new(source);
    let mut target_pages = Pager::new(target);
    let mut expected = source_pages.next().await.map_err(MigrateError::Source)?;
    let mut verified = 0u64;
    while let Some(want) = &expected {
        let Some(got) = target_pages.next().await.map_err(MigrateError::Target)? else {
            return Err(MigrateError::Verification(format!(
                "event {} ({} revision {}) is missing from the target",
                want.event_id, want.stream, want.revision
            )));
        };
        if got.event_id != want.event_id {
            if ids.contains(&got.event_id) {
                return Err(MigrateError::Verification(format!(
                    "event {} ({} revision {}) is out of order in the target",
                    got.event_id, got.stream, got.revision
                )));
            }
            // An event the target held before, in a stream of its own.
            continue;
        }
        same_event(want, &got)?;
        verified += 1;
        bar.inc(1);
        expected = source_pages.next().await.map_err(MigrateError::Source)?;
    }
    bar.finish_and_clear();
    Ok(verified)
}

fn same_event(want: &RecordedEvent, got: &RecordedEvent) -> Result<(), MigrateError> {
    let mut differences = Vec::new();
    if got.stream != want.stream || got.revision != want.revision {
        differences.push(format!(
            "at {} revision {} instead of {} revision {}",
            got.stream, got.revision, want.stream, want.revision
        ));
    }
    if got.event_type != want.event_type {
        differences.push("event type".to_string());
    }
    if got.data != want.data {
        differences.push("body".to_string());
    }
    // The commit time is the store's to stamp (the embedded log stamps its own); everything
    // else in the metadata must survive.
    let mut want_meta = want.metadata.clone();
    want_meta.commit_ms = got.metadata.commit_ms;
    if got.metadata != want_meta {
        differences.push("metadata".to_string());
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(MigrateError::Verification(format!(
            "event {} differs: {}",
            want.event_id,
            differences.join(", ")
        )))
    }
}

/// One event at a time from a log's `$all`, read a page at a time.
struct Pager<'a> {
    log: &'a dyn EventLog,
    cursor: Option<Position>,
    buffer: std::collections::VecDeque<RecordedEvent>,
    exhausted: bool,
}

impl<'a> Pager<'a> {
    fn new(log: &'a dyn EventLog) -> Self {
        Self {
            log,
            cursor: None,
            buffer: Default::default(),
            exhausted: false,
        }
    }

    async fn next(&mut self) -> Result<Option<RecordedEvent>, EventLogError> {
        if self.buffer.is_empty() && !self.exhausted {
            let page = self
                .log
                .read_all(self.cursor, &EventFilter::all(), PAGE)
                .await?;
            self.exhausted = page.len() < PAGE;
            self.cursor = page.last().map(|e| e.position).or(self.cursor);
            self.buffer.extend(page);
        }
        Ok(self.buffer.pop_front())
    }
}
