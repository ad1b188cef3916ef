//! The event log: the only source of truth in Sphere EHR.
//!
//! One trait, [`EventLog`], with EventStoreDB's semantics, and two implementations: the
//! embedded SQLite log ([`sqlite::SqliteLog`], the default) and KurrentDB. Both must pass the
//! same conformance suite ([`conformance`]). Everything else (search index, token status,
//! exports, audit view) is a projection fed from here.
//!
//! Semantics, shared by every backend:
//! - streams are named `{category}-{id}`; revisions are zero-based and gap-free per stream;
//! - an append names an [`ExpectedRevision`]; a mismatch is [`EventLogError::WrongExpectedVersion`]
//!   and writes nothing;
//! - appending several events to one stream is atomic; [`EventLog::append_multi`] is atomic
//!   across streams (see `docs/adr/0001-multi-stream-commit.md`);
//! - every committed event has a [`Position`] in `$all`, strictly increasing in commit order;
//! - appends are idempotent by event id: retrying an append whose events are already
//!   committed, at the same place in the same stream, succeeds and writes nothing.

pub mod conformance;
pub mod cqrs;
pub mod kurrentdb;
pub mod migrate;
pub mod sqlite;

use async_trait::async_trait;
pub use sphere_domain::envelope::{
    category_of, Actor, EventFilter, EventMetadata, NewEvent, Position, RecordedEvent,
};
use tokio::sync::mpsc;

/// What the writer expects the stream's current revision to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (hold at least one event).
    StreamExists,
    /// The stream's last event must have this revision.
    Exact(u64),
}

impl std::fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("stream exists"),
            Self::Exact(r) => write!(f, "revision {r}"),
        }
    }
}

/// The outcome of a successful append to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Revision of the last event now in the stream (the value to pass as
    /// `ExpectedRevision::Exact` next time).
    pub next_revision: u64,
    /// Position of the last event written in `$all`.
    pub position: Position,
}

/// One stream's part of a multi-stream commit.
#[derive(Debug, Clone)]
pub struct StreamWrite {
    pub stream: String,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
}

/// Direction of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

/// Where a stream read starts (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// Revision 0 (forwards) or the last event (backwards).
    Origin,
    /// This revision, inclusive.
    Revision(u64),
}

/// A message of a catch-up subscription.
// `CaughtUp` comes once per subscription and events by the million: boxing events to shrink
// the rare variant would cost an allocation per event on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionMessage {
    Event(RecordedEvent),
    /// Every event committed before the subscription started has now been delivered;
    /// what follows is live.
    CaughtUp,
    /// Every event matching the filter up to and including this position has been
    /// delivered: the subscription has looked that far, and what it skipped did not match.
    /// Sent after events the filter dropped, so that a subscriber waiting for a position
    /// holding such an event is released (KurrentDB's filtered-subscription checkpoints).
    /// Never below an event already delivered; events that follow are after it.
    Checkpoint(Position),
}

/// A catch-up subscription: historical events, then [`SubscriptionMessage::CaughtUp`], then
/// live events, in `$all` order, with nothing skipped or doubled, and
/// [`SubscriptionMessage::Checkpoint`]s past events the filter dropped, promptly once the log
/// has moved past them. Dropping it unsubscribes.
pub struct Subscription {
    receiver: mpsc::Receiver<Result<SubscriptionMessage, EventLogError>>,
}

impl Subscription {
    pub fn new(receiver: mpsc::Receiver<Result<SubscriptionMessage, EventLogError>>) -> Self {
        Self { receiver }
    }

    /// The next message; `None` once the log has shut down.
    pub async fn next(&mut self) -> Option<Result<SubscriptionMessage, EventLogError>> {
        self.receiver.recv().await
    }

    /// The next message if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Result<SubscriptionMessage, EventLogError>> {
        self.receiver.try_recv().ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("wrong expected version on stream {stream}: expected {expected}, actual {}", actual.map(|r| r.to_string()).unwrap_or_else(|| "no stream".into()))]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedRevision,
        /// The stream's current revision, `None` if it does not exist.
        actual: Option<u64>,
    },
    /// Some events of an append were already committed elsewhere (a different stream or
    /// place), so the append is neither new nor a retry.
    #[error("event id {event_id} already committed to stream {stream} at another place")]
    DuplicateEventId {
        event_id: uuid::Uuid,
        stream: String,
    },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// The store holds something that cannot be read back: never silently skipped.
    #[error("event log is corrupt: {0}")]
    Corrupt(String),
    #[error("event log has shut down")]
    Closed,
}

impl EventLogError {
    pub fn is_wrong_expected_version(&self) -> bool {
        matches!(self, Self::WrongExpectedVersion { .. })
    }
}

/// The operations of the event log, with EventStoreDB's semantics (see module docs).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if its revision matches `expected`.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventLogError>;

    /// Appends to several streams as one all-or-nothing commit: every stream's expected
    /// revision is checked, and either every event is committed or none is. Results are in
    /// the order of `writes`. A stream may appear only once.
    async fn append_multi(
        &self,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>, EventLogError>;

    /// Reads up to `max` events of one stream. A missing stream reads as empty.
    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        start: StreamStart,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError>;

    /// Reads up to `max` events of `$all` strictly after `after` (`None`: from the start),
    /// forwards, keeping those that match `filter`.
    async fn read_all(
        &self,
        after: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError>;

    /// Reads up to `max` events of `$all` strictly before `before` (`None`: from the newest),
    /// backwards (newest first), keeping those that match `filter`.
    async fn read_all_backwards(
        &self,
        before: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError>;

    /// As [`EventLog::read_all`], but the events may come without their data and metadata
    /// (empty data; metadata holding only `commit_ms`): for scans that only need to know which
    /// streams have events where (the export's first pass). A log that cannot skip the bodies
    /// returns whole events.
    async fn read_all_heads(
        &self,
        after: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        self.read_all(after, filter, max).await
    }

    /// Reads up to `max` events of every stream in `category`, in `$all` order, strictly
    /// after `after`.
    async fn read_category(
        &self,
        category: &str,
        after: Option<Position>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        self.read_all(after, &EventFilter::categories([category]), max)
            .await
    }

    /// A catch-up subscription to `$all` strictly after `after`, filtered by `filter`.
    async fn subscribe(
        &self,
        after: Option<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, EventLogError>;

    /// The position of the last committed event, `None` for an empty log.
    async fn head(&self) -> Result<Option<Position>, EventLogError>;

    /// The current revision of `stream`, `None` if it does not exist.
    async fn stream_revision(&self, stream: &str) -> Result<Option<u64>, EventLogError>;

    /// [`EventLog::stream_revision`] of each of `streams`, in their order: for a batch writer
    /// (the import) that would otherwise ask once per resource.
    async fn stream_revisions(
        &self,
        streams: Vec<String>,
    ) -> Result<Vec<Option<u64>>, EventLogError> {
        let mut revisions = Vec::with_capacity(streams.len());
        for stream in &streams {
            revisions.push(self.stream_revision(stream).await?);
        }
        Ok(revisions)
    }

    /// Finishes every append already accepted, then refuses new ones with
    /// [`EventLogError::Closed`]. Used by graceful shutdown and by tests that restart a store.
    async fn close(&self) -> Result<(), EventLogError> {
        Ok(())
    }
}
