//! The single writer: group commit.
//!
//! Every append goes through one thread that owns the write connection. It takes whatever
//! appends are waiting, writes them all in one transaction (each in its own savepoint, so a
//! concurrency conflict fails only its own append), commits once - one fsync for the whole
//! batch - and only then answers each caller. Positions are assigned inside the write lock,
//! so commits are in position order and a reader that sees position N has every position
//! below N: live subscriptions cannot race past a gap.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;

use super::schema;
use crate::eventlog::{
    category_of, AppendResult, EventLogError, ExpectedRevision, Position, RecordedEvent,
    StreamWrite,
};

/// The most appends written in one transaction: large enough to amortize the fsync, small
/// enough that the first caller in a batch is not kept waiting long.
const MAX_BATCH: usize = 2048;

pub struct WriteRequest {
    pub writes: Vec<StreamWrite>,
    pub reply: oneshot::Sender<Result<Vec<AppendResult>, EventLogError>>,
}

pub struct Writer {
    conn: Connection,
    path: PathBuf,
    /// Last commit time handed out, so that commit times never go backwards with positions
    /// even if the wall clock does (Bulk Data `_since` relies on it).
    last_commit_ms: i64,
    head: watch::Sender<u64>,
    /// Every commit's events, for live subscriptions (see [`Committed`]).
    feed: broadcast::Sender<Committed>,
    /// Current revision of recently written streams, so that most appends need no read.
    /// Dropped whenever another process has committed to the file (see `data_version`).
    revisions: HashMap<String, u64>,
    /// SQLite's `data_version` as of our last look: it changes only when *another*
    /// connection commits, which makes the revision cache stale.
    data_version: i64,
}

/// One commit's events as a reader would read them: exactly the positions `(after, upto]`
/// (`events` empty, and `after` = `upto`, when the log moved by another process's commit,
/// which only a read shows, or by a commit larger than [`FEED_COMMIT_BYTES`]).
#[derive(Debug, Clone)]
pub struct Committed {
    pub after: u64,
    pub upto: u64,
    pub events: Arc<Vec<RecordedEvent>>,
}

/// Most bytes of events (about) a commit hands to live subscriptions in memory; a larger
/// commit is announced without its events. Times the feed's length, what a lagging
/// subscriber can keep in memory.
pub const FEED_COMMIT_BYTES: usize = 256 * 1024;

/// What an event costs in memory besides its data, stream and type (metadata, ids).
const EVENT_OVERHEAD: usize = 256;

/// Beyond this many cached stream revisions the cache starts over (bounded memory).
const MAX_CACHED_STREAMS: usize = 200_000;

impl Writer {
    pub fn new(
        conn: Connection,
        path: PathBuf,
        head: watch::Sender<u64>,
        feed: broadcast::Sender<Committed>,
    ) -> Result<Self, EventLogError> {
        let last_commit_ms: i64 = conn
            .query_row("SELECT COALESCE(MAX(created_ms), 0) FROM events", [], |r| {
                r.get(0)
            })
            .map_err(|e| schema::open_error(&path, e))?;
        let data_version = data_version(&conn).map_err(|e| schema::open_error(&path, e))?;
        Ok(Self {
            conn,
            path,
            last_commit_ms,
            head,
            feed,
            revisions: HashMap::new(),
            data_version,
        })
    }

    /// Runs until every sender is gone, draining what is queued first.
    pub fn run(mut self, mut requests: mpsc::UnboundedReceiver<WriteRequest>) {
        while let Some(first) = requests.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        let started = std::time::Instant::now();
        let commit_ms = now_ms().max(self.last_commit_ms);
        let mut fresh = Vec::new();
        let (outcomes, committed) = match self.write_batch(&batch, commit_ms, &mut fresh) {
            Ok(outcomes) => (outcomes, true),
            Err(e) => {
                tracing::error!(error = %e, "event log commit failed");
                let message = e.to_string();
                let outcomes = batch
                    .iter()
                    .map(|_| Err(EventLogError::Unavailable(message.clone())))
                    .collect();
                (outcomes, false)
            }
        };
        if committed {
            let m = &crate::ops::metrics::metrics().log;
            m.commits.fetch_add(1, Ordering::Relaxed);
            m.commit_latency.observe(started.elapsed());
            let accepted = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
            m.append_requests.fetch_add(accepted, Ordering::Relaxed);
            m.rejected_appends
                .fetch_add(outcomes.len() as u64 - accepted, Ordering::Relaxed);
            let events: usize = batch
                .iter()
                .zip(&outcomes)
                .filter(|(_, o)| o.is_ok())
                .map(|(r, _)| r.writes.iter().map(|w| w.events.len()).sum::<usize>())
                .sum();
            m.events_appended
                .fetch_add(events as u64, Ordering::Relaxed);
            self.last_commit_ms = commit_ms;
            let newest = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok())
                .flat_map(|results| results.iter().map(|r| r.position.0))
                .max();
            // The events inserted are one contiguous range of positions (the write lock is
            // held from the first insert to the commit). A large commit goes out without its
            // events (subscriptions read them from the file): the feed keeps up to
            // `FEED_COMMITS` commits for a lagging subscriber, and whole batches of large
            // transaction Bundles would hold gigabytes.
            if let (Some(first), Some(last)) = (fresh.first(), fresh.last()) {
                let (after, upto) = (first.position.0 - 1, last.position.0);
                let bytes: usize = fresh
                    .iter()
                    .map(|e| e.data.len() + e.stream.len() + e.event_type.len() + EVENT_OVERHEAD)
                    .sum();
                let _ = self.feed.send(if bytes <= FEED_COMMIT_BYTES {
                    Committed {
                        after,
                        upto,
                        events: Arc::new(std::mem::take(&mut fresh)),
                    }
                } else {
                    Committed {
                        after: upto,
                        upto,
                        events: Arc::default(),
                    }
                });
            }
            if let Some(newest) = newest {
                self.head.send_if_modified(|head| {
                    let moved = newest > *head;
                    if moved {
                        *head = newest;
                    }
                    moved
                });
            }
        }
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            // A caller that gave up waiting is not an error: its append is durable regardless.
            let _ = request.reply.send(outcome);
        }
    }

    /// Writes every request of the batch in one transaction. The outer error means the
    /// transaction itself failed (nothing of the batch is committed).
    #[allow(clippy::type_complexity)]
    fn write_batch(
        &mut self,
        batch: &[WriteRequest],
        commit_ms: i64,
        fresh: &mut Vec<RecordedEvent>,
    ) -> Result<Vec<Result<Vec<AppendResult>, EventLogError>>, EventLogError> {
        let path = self.path.clone();
        let sql_err =
            |e: rusqlite::Error| EventLogError::Unavailable(format!("{}: {e}", path.display()));
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        // Inside the write lock: if another process committed since we last looked, the
        // cached revisions may be stale.
        let version = data_version(&tx).map_err(sql_err)?;
        if version != self.data_version || self.revisions.len() > MAX_CACHED_STREAMS {
            self.revisions.clear();
            self.data_version = version;
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut touched: Vec<(String, u64)> = Vec::new();
        for request in batch {
            // One event is one INSERT, atomic on its own, and every check comes before it;
            // only larger requests need a savepoint to undo their first inserts.
            let events: usize = request.writes.iter().map(|w| w.events.len()).sum();
            let guarded = events > 1;
            if guarded {
                tx.prepare_cached("SAVEPOINT request")
                    .and_then(|mut s| s.execute([]))
                    .map_err(sql_err)?;
            }
            let inserted_before = fresh.len();
            let outcome = write_request(&tx, &self.revisions, &request.writes, commit_ms, fresh);
            if outcome.is_err() {
                // Rolled back below: none of its inserts is committed.
                fresh.truncate(inserted_before);
            }
            if guarded {
                let end = if outcome.is_ok() {
                    "RELEASE request"
                } else {
                    "ROLLBACK TO request"
                };
                tx.prepare_cached(end)
                    .and_then(|mut s| s.execute([]))
                    .map_err(sql_err)?;
                if outcome.is_err() {
                    tx.prepare_cached("RELEASE request")
                        .and_then(|mut s| s.execute([]))
                        .map_err(sql_err)?;
                }
            }
            match outcome {
                Ok(results) => {
                    for (write, result) in request.writes.iter().zip(&results) {
                        self.revisions
                            .insert(write.stream.clone(), result.next_revision);
                        touched.push((write.stream.clone(), result.next_revision));
                    }
                    outcomes.push(Ok(results));
                }
                Err(WriteFailure::Rejected(e)) => outcomes.push(Err(e)),
                Err(WriteFailure::Duplicate(e)) => {
                    outcomes.push(replay_of(&tx, &request.writes).map_err(sql_err)?.ok_or(e));
                }
                Err(WriteFailure::Sql(e)) => return Err(sql_err(e)),
            }
        }
        tx.set_drop_behavior(rusqlite::DropBehavior::Rollback);
        if let Err(e) = tx.commit() {
            // Nothing of the batch is committed: forget what it cached.
            for (stream, _) in touched {
                self.revisions.remove(&stream);
            }
            fresh.clear();
            return Err(sql_err(e));
        }
        Ok(outcomes)
    }
}

enum WriteFailure {
    /// The request is refused (conflict, duplicate, invalid); the batch goes on.
    Rejected(EventLogError),
    /// The database failed; the whole batch is abandoned.
    Sql(rusqlite::Error),
    /// An event id is already in the log: roll back what the request began, then see
    /// whether the whole request is a retry of an earlier commit.
    Duplicate(EventLogError),
}

impl From<rusqlite::Error> for WriteFailure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

fn write_request(
    tx: &Connection,
    cache: &HashMap<String, u64>,
    writes: &[StreamWrite],
    commit_ms: i64,
    fresh: &mut Vec<RecordedEvent>,
) -> Result<Vec<AppendResult>, WriteFailure> {
    if writes.is_empty() {
        return Err(WriteFailure::Rejected(EventLogError::InvalidAppend(
            "a commit needs at least one stream".into(),
        )));
    }
    let mut seen = HashSet::with_capacity(writes.len());
    for write in writes {
        if write.stream.is_empty() || write.stream.starts_with('$') {
            return Err(WriteFailure::Rejected(EventLogError::InvalidAppend(
                format!("invalid stream name {:?}", write.stream),
            )));
        }
        if write.events.is_empty() {
            return Err(WriteFailure::Rejected(EventLogError::InvalidAppend(
                format!("no events for stream {}", write.stream),
            )));
        }
        if !seen.insert(write.stream.as_str()) {
            return Err(WriteFailure::Rejected(EventLogError::InvalidAppend(
                format!("stream {} appears twice in one commit", write.stream),
            )));
        }
    }
    writes
        .iter()
        .map(|write| write_stream(tx, cache, write, commit_ms, fresh))
        .collect()
}

/// Inserts `write`'s events, adding each to `fresh` as a reader will see it.
fn write_stream(
    tx: &Connection,
    cache: &HashMap<String, u64>,
    write: &StreamWrite,
    commit_ms: i64,
    fresh: &mut Vec<RecordedEvent>,
) -> Result<AppendResult, WriteFailure> {
    let current: Option<u64> = match cache.get(&write.stream) {
        Some(revision) => Some(*revision),
        None => tx
            .prepare_cached("SELECT MAX(revision) FROM events WHERE stream = ?1")?
            .query_row([&write.stream], |r| r.get::<_, Option<i64>>(0))?
            .map(|r| r as u64),
    };
    let matches = match write.expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => current.is_none(),
        ExpectedRevision::StreamExists => current.is_some(),
        ExpectedRevision::Exact(r) => current == Some(r),
    };
    if !matches {
        // A retry of an append that already went through looks like a conflict; answer it
        // with the original result instead (idempotence by event id).
        if let Some(previous) = earlier_commit(tx, write)? {
            return Ok(previous);
        }
        return Err(WriteFailure::Rejected(
            EventLogError::WrongExpectedVersion {
                stream: write.stream.clone(),
                expected: write.expected,
                actual: current,
            },
        ));
    }
    let category = category_of(&write.stream);
    let mut revision = current.map(|r| r + 1).unwrap_or(0);
    let mut position = 0i64;
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (event_id, stream, revision, category, event_type, data, metadata, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for event in &write.events {
        let mut metadata = event.metadata.clone();
        metadata.commit_ms = commit_ms;
        let stored_metadata = serde_json::to_vec(&metadata).map_err(|e| {
            WriteFailure::Rejected(EventLogError::InvalidAppend(format!("metadata: {e}")))
        })?;
        let inserted = insert.execute(params![
            event.event_id.as_bytes().as_slice(),
            write.stream,
            revision as i64,
            category,
            event.event_type,
            event.data.as_ref(),
            stored_metadata,
            commit_ms,
        ]);
        match inserted {
            Ok(_) => {}
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
                // The savepoint is rolled back by the caller; first see whether this is a
                // retry of an append already committed (with `Any`, it passed the check).
                drop(insert);
                return Err(WriteFailure::Duplicate(EventLogError::DuplicateEventId {
                    event_id: event.event_id,
                    stream: write.stream.clone(),
                }));
            }
            Err(e) => return Err(e.into()),
        }
        position = tx.last_insert_rowid();
        fresh.push(RecordedEvent {
            position: Position(position as u64),
            stream: write.stream.clone(),
            revision,
            event_id: event.event_id,
            event_type: event.event_type.clone(),
            data: event.data.clone(),
            metadata,
        });
        revision += 1;
    }
    let last = revision - 1;
    Ok(AppendResult {
        next_revision: last,
        position: Position(position as u64),
    })
}

/// The original results if every stream of the request is a retry of an earlier commit.
fn replay_of(
    tx: &Connection,
    writes: &[StreamWrite],
) -> Result<Option<Vec<AppendResult>>, rusqlite::Error> {
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        match earlier_commit(tx, write) {
            Ok(Some(previous)) => results.push(previous),
            Ok(None) | Err(WriteFailure::Rejected(_)) | Err(WriteFailure::Duplicate(_)) => {
                return Ok(None)
            }
            Err(WriteFailure::Sql(e)) => return Err(e),
        }
    }
    Ok(Some(results))
}

/// If every event of `write` is already committed to its stream, contiguously and in order,
/// this is a retry: answer with the original result and write nothing.
fn earlier_commit(
    tx: &Connection,
    write: &StreamWrite,
) -> Result<Option<AppendResult>, WriteFailure> {
    let Some(first) = write.events.first() else {
        return Ok(None);
    };
    let mut lookup = tx.prepare_cached(
        "SELECT stream, revision, global_position FROM events WHERE event_id = ?1",
    )?;
    let mut found = |id: &Uuid| -> Result<Option<(String, u64, u64)>, rusqlite::Error> {
        lookup
            .query_row([id.as_bytes().as_slice()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })
            .optional()
    };
    let Some((stream, first_revision, _)) = found(&first.event_id)? else {
        return Ok(None);
    };
    let mut last = None;
    for (offset, event) in write.events.iter().enumerate() {
        match found(&event.event_id)? {
            Some((s, r, p)) if s == write.stream && r == first_revision + offset as u64 => {
                last = Some((r, p));
            }
            _ => {
                return Err(WriteFailure::Rejected(EventLogError::DuplicateEventId {
                    event_id: event.event_id,
                    stream,
                }))
            }
        }
    }
    Ok(last.map(|(revision, position)| AppendResult {
        next_revision: revision,
        position: Position(position),
    }))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))
}
