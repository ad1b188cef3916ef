//! The KurrentDB (EventStoreDB) event log: the store operators run when one machine is not
//! enough. Selected by a connection string such as `kurrentdb://localhost:2113?tls=false`.
//!
//! Every [`EventLog`] operation maps onto the official `kurrentdb` client (v1 gRPC streams
//! protocol), except the atomic multi-stream commit, which uses KurrentDB 25.1's v2
//! `MultiStreamAppend` through Sphere's own generated client ([`multi_append`]).
//!
//! Mapping decisions:
//! - **Positions.** [`Position`] is KurrentDB's commit position. Every event written through
//!   gRPC is its own committed record, so its commit position equals its prepare position
//!   and is unique and increasing in `$all` order; a position converts back as
//!   `(commit, prepare) = (p, p)`. (Events of legacy explicit transactions, written by the
//!   old TCP clients, share a commit position; Sphere never writes those.)
//! - **Append results.** KurrentDB reports the position of a multi-event write's
//!   transaction, which is its *first* event; the trait promises the last one (read-your-
//!   writes waits on it), so a multi-event append reads its last event's position back.
//! - **Category reads and filters** use a server-side `$all` filter (stream-name prefix
//!   `{category}-`, or event-type prefix), so no server-side projection is needed; the exact
//!   filter is re-applied on the client because a prefix can over-match.
//! - **System events** (`$`-prefixed streams or types: statistics, projections' links) are
//!   skipped everywhere: Sphere neither writes nor reads them.
//! - **Commit time.** `commitMs` is stamped by this adapter at append time, client side,
//!   because KurrentDB's `created` reaches the client truncated to seconds (see
//!   [`metadata`]).
//! - **Subscriptions** are the server's catch-up subscriptions to `$all`, filtered on the
//!   client: an event the filter drops becomes a [`SubscriptionMessage::Checkpoint`] at
//!   once, so a projection waiting for a position it does not care about is released without
//!   waiting for the server's periodic checkpoints. (A server-side filter would save the
//!   transfer of dropped events; it needs prompt checkpoints first.) The server's caught-up
//!   message becomes [`SubscriptionMessage::CaughtUp`] (KurrentDB 23.10 or later sends it).
//!   A dropped connection resubscribes after the last event seen.
//!
//! Known limitation of the official client (kurrentdb 1.2.0): its HTTP/2 connector does not
//! set `TCP_NODELAY`, so on Linux each request can wait out a delayed ACK (~40 ms measured on
//! loopback against the test double: about 20 sequential appends per second). Concurrent
//! requests share the connection and hide most of it; the one-line fix
//! (`HttpConnector::set_nodelay(true)` in the client) measured 40x faster sequential appends.

mod metadata;
mod multi_append;
pub mod proto;
mod settings;
pub mod testserver;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use kurrentdb::{
    AppendToStreamOptions, Client, ClientSettings, CurrentRevision, EventData, ReadAllOptions,
    ReadStreamOptions, ResolvedEvent, StreamPosition, StreamState, SubscribeToAllOptions,
    SubscriptionEvent, SubscriptionFilter,
};
use tokio::sync::mpsc;

use super::{
    AppendResult, Direction, EventFilter, EventLog, EventLogError, ExpectedRevision, NewEvent,
    Position, RecordedEvent, StreamStart, StreamWrite, Subscription, SubscriptionMessage,
};
use multi_append::MultiStreamAppender;
pub use settings::is_kurrentdb_url;
use settings::ConnectionString;

/// Most events asked of the server in one read request.
const READ_PAGE: usize = 4096;
/// Messages a subscriber may fall behind before the server stream is paused.
const SUBSCRIPTION_BUFFER: usize = 1024;
/// Reconnection attempts of a subscription before it reports the failure.
const SUBSCRIPTION_RETRIES: u32 = 10;

/// The event log on a KurrentDB server or cluster. Cheap to clone.
#[derive(Clone)]
pub struct KurrentDbLog {
    client: Client,
    multi: MultiStreamAppender,
    redacted_url: String,
}

impl KurrentDbLog {
    /// Connects and checks that the server answers. Must be called inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, EventLogError> {
        let conn = ConnectionString::parse(url)?;
        let settings: ClientSettings = url.parse().map_err(|e| {
            EventLogError::Unavailable(format!(
                "invalid KurrentDB connection string {}: {e}",
                conn.redacted
            ))
        })?;
        let client = Client::new(settings).map_err(|e| {
            EventLogError::Unavailable(format!("KurrentDB client for {}: {e}", conn.redacted))
        })?;
        let log = Self {
            client,
            multi: MultiStreamAppender::new(&conn)?,
            redacted_url: conn.redacted,
        };
        log.head().await.map_err(|e| {
            EventLogError::Unavailable(format!(
                "KurrentDB at {} is not reachable: {e}",
                log.redacted_url
            ))
        })?;
        Ok(log)
    }

    /// The connection string with any password masked.
    pub fn url(&self) -> &str {
        &self.redacted_url
    }

    /// Position of the event at `revision` of `stream` (an append's last event).
    async fn position_of(&self, stream: &str, revision: u64) -> Result<Position, EventLogError> {
        let read = self
            .read_stream(
                stream,
                Direction::Backwards,
                StreamStart::Revision(revision),
                1,
            )
            .await?;
        match read.first() {
            Some(e) if e.revision == revision => Ok(e.position),
            _ => Err(EventLogError::Unavailable(format!(
                "event {revision} of {stream} is not readable right after its append"
            ))),
        }
    }

    /// Reads `$all` from `from` (exclusive; `None`: the start, or the end when `backwards`)
    /// through the server filter, applying `filter` exactly on this side.
    async fn read_all_paged(
        &self,
        from: Option<Position>,
        backwards: bool,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        let mut out = Vec::new();
        let mut cursor = from;
        // Whether or not the server includes the start position, one more covers it; the
        // position check below drops it.
        let passed = |event: Position, cursor: Option<Position>| match cursor {
            None => true,
            Some(c) if backwards => event < c,
            Some(c) => event > c,
        };
        while out.len() < max {
            let want = (max - out.len()).saturating_add(1).min(READ_PAGE);
            let start = match (cursor, backwards) {
                (None, true) => StreamPosition::End,
                (c, _) => to_start(c),
            };
            let options = ReadAllOptions::default()
                .position(start)
                .filter(server_filter(filter))
                .max_count(want);
            let options = if backwards {
                options.backwards()
            } else {
                options.forwards()
            };
            let mut stream = self.client.read_all(&options).await.map_err(map_err)?;
            let mut returned = 0;
            while let Some(resolved) = stream.next().await.map_err(map_err)? {
                returned += 1;
                let Some(event) = to_recorded(resolved)? else {
                    continue;
                };
                if !passed(event.position, cursor) {
                    continue;
                }
                cursor = Some(event.position);
                if filter.matches(&event.stream, &event.event_type) && out.len() < max {
                    out.push(event);
                }
            }
            if returned < want {
                break;
            }
        }
        Ok(out)
    }
}

impl std::fmt::Debug for KurrentDbLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KurrentDbLog")
            .field("url", &self.redacted_url)
            .finish()
    }
}

#[async_trait]
impl EventLog for KurrentDbLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventLogError> {
        validate(stream, &events)?;
        let count = events.len();
        let commit_ms = metadata::now_ms();
        let data = events
            .iter()
            .map(|e| to_event_data(e, commit_ms))
            .collect::<Result<Vec<_>, _>>()?;
        let options = AppendToStreamOptions::default().stream_state(to_state(expected));
        let written = match self.client.append_to_stream(stream, &options, data).await {
            Ok(w) => w,
            Err(kurrentdb::Error::WrongExpectedVersion { current, .. }) => {
                return Err(EventLogError::WrongExpectedVersion {
                    stream: stream.to_string(),
                    expected,
                    actual: match current {
                        CurrentRevision::Current(r) => Some(r),
                        CurrentRevision::NoStream => None,
                    },
                })
            }
            Err(e) => return Err(map_err(e)),
        };
        let next_revision = written.next_expected_version;
        // A single event's reported position is its own; a retry reports none (0).
        let position = if count == 1 && written.position.commit > 0 {
            Position(written.position.commit)
        } else {
            self.position_of(stream, next_revision).await?
        };
        Ok(AppendResult {
            next_revision,
            position,
        })
    }

    async fn append_multi(
        &self,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>, EventLogError> {
        if writes.is_empty() {
            return Err(EventLogError::InvalidAppend(
                "a commit needs at least one stream".into(),
            ));
        }
        let mut seen = HashSet::new();
        for write in &writes {
            validate(&write.stream, &write.events)?;
            if !seen.insert(write.stream.as_str()) {
                return Err(EventLogError::InvalidAppend(format!(
                    "stream {} appears twice in one commit",
                    write.stream
                )));
            }
        }
        if let [single] = writes.as_slice() {
            // One stream is atomic on the v1 protocol, which every server version offers.
            let result = self
                .append(&single.stream, single.expected, single.events.clone())
                .await?;
            return Ok(vec![result]);
        }
        let commit_ms = metadata::now_ms();
        let stamped: Vec<StreamWrite> = writes
            .into_iter()
            .map(|mut w| {
                for e in &mut w.events {
                    e.metadata = metadata::stamped(&e.metadata, commit_ms);
                }
                w
            })
            .collect();
        let revisions = self.multi.append(&stamped).await?;
        // Each stream's last position, asked concurrently: one round trip, not one per stream.
        let positions = futures::future::try_join_all(
            stamped
                .iter()
                .zip(&revisions)
                .map(|(write, &revision)| self.position_of(&write.stream, revision)),
        )
        .await?;
        let results: Vec<AppendResult> = revisions
            .into_iter()
            .zip(positions)
            .map(|(next_revision, position)| AppendResult {
                next_revision,
                position,
            })
            .collect();
        Ok(results)
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        start: StreamStart,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let options = ReadStreamOptions::default().max_count(max);
        let options = match direction {
            Direction::Forwards => options.forwards(),
            Direction::Backwards => options.backwards(),
        };
        let options = options.position(match (start, direction) {
            (StreamStart::Origin, Direction::Forwards) => StreamPosition::Start,
            (StreamStart::Origin, Direction::Backwards) => StreamPosition::End,
            (StreamStart::Revision(r), _) => StreamPosition::Position(r),
        });
        let mut read = match self.client.read_stream(stream, &options).await {
            Ok(read) => read,
            Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
            Err(e) => return Err(map_err(e)),
        };
        let mut out = Vec::new();
        loop {
            match read.next().await {
                Ok(Some(resolved)) => {
                    if let Some(event) = to_recorded(resolved)? {
                        out.push(event);
                    }
                }
                Ok(None) => return Ok(out),
                // The server says so in the response stream rather than as a status.
                Err(kurrentdb::Error::ResourceNotFound) => return Ok(Vec::new()),
                Err(e) => return Err(map_err(e)),
            }
        }
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        self.read_all_paged(after, false, filter, max).await
    }

    async fn read_all_backwards(
        &self,
        before: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        self.read_all_paged(before, true, filter, max).await
    }

    async fn subscribe(
        &self,
        after: Option<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, EventLogError> {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        tokio::spawn(run_subscription(self.client.clone(), after, filter, tx));
        Ok(Subscription::new(rx))
    }

    async fn head(&self) -> Result<Option<Position>, EventLogError> {
        let options = ReadAllOptions::default()
            .backwards()
            .position(StreamPosition::End)
            .filter(SubscriptionFilter::on_event_type().exclude_system_events())
            .max_count(1);
        let mut read = self.client.read_all(&options).await.map_err(map_err)?;
        while let Some(resolved) = read.next().await.map_err(map_err)? {
            if let Some(event) = to_recorded(resolved)? {
                return Ok(Some(event.position));
            }
        }
        Ok(None)
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<u64>, EventLogError> {
        let last = self
            .read_stream(stream, Direction::Backwards, StreamStart::Origin, 1)
            .await?;
        Ok(last.first().map(|e| e.revision))
    }
}

/// Feeds a [`Subscription`] from a server catch-up subscription, resubscribing after
/// transient failures from the last delivered position.
async fn run_subscription(
    client: Client,
    after: Option<Position>,
    filter: EventFilter,
    tx: mpsc::Sender<Result<SubscriptionMessage, EventLogError>>,
) {
    let mut resume = after;
    let mut caught_up_sent = false;
    let mut failures = 0u32;
    loop {
        // Unfiltered on the server (system events aside): the client filters, so that it
        // sees every position it skips and can report it at once. KurrentDB's own
        // checkpoints come only every `window x multiplier` considered events, too late for
        // a subscriber waiting for its own write.
        let options = SubscribeToAllOptions::default()
            .position(to_start(resume))
            .filter(server_filter(&EventFilter::all()));
        let mut server = client.subscribe_to_all(&options).await;
        loop {
            let next = tokio::select! {
                next = server.next_subscription_event() => next,
                // The subscriber went away: stop reading from the server.
                () = tx.closed() => return,
            };
            match next {
                Ok(SubscriptionEvent::EventAppeared(resolved)) => {
                    failures = 0;
                    // Stream and type decide; the metadata is decoded only for delivery.
                    let Some((position, wanted)) = sighted(&resolved, &filter) else {
                        continue; // a system event
                    };
                    if Some(position) <= resume {
                        continue;
                    }
                    resume = Some(position);
                    let message = if !wanted {
                        SubscriptionMessage::Checkpoint(position)
                    } else {
                        match to_recorded(resolved) {
                            Ok(Some(event)) => SubscriptionMessage::Event(event),
                            Ok(None) => continue,
                            Err(e) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                    };
                    if tx.send(Ok(message)).await.is_err() {
                        return;
                    }
                }
                Ok(SubscriptionEvent::CaughtUp(_)) => {
                    failures = 0;
                    if !caught_up_sent {
                        caught_up_sent = true;
                        if tx.send(Ok(SubscriptionMessage::CaughtUp)).await.is_err() {
                            return;
                        }
                    }
                }
                // Confirmation, checkpoints (a resume uses the last delivered event, which is
                // exact), fell-behind notices: nothing to deliver.
                Ok(_) => {}
                Err(e) if is_transient(&e) && failures < SUBSCRIPTION_RETRIES => {
                    failures += 1;
                    tracing::warn!(error = %e, attempt = failures, "KurrentDB subscription dropped; resubscribing");
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(failures))).await;
                    break;
                }
                Err(e) => {
                    let _ = tx.send(Err(map_err(e))).await;
                    return;
                }
            }
        }
    }
}

fn validate(stream: &str, events: &[NewEvent]) -> Result<(), EventLogError> {
    if stream.is_empty() || stream.starts_with('$') {
        return Err(EventLogError::InvalidAppend(format!(
            "invalid stream name {stream:?}"
        )));
    }
    if events.is_empty() {
        return Err(EventLogError::InvalidAppend(format!(
            "no events for stream {stream}"
        )));
    }
    Ok(())
}

fn to_state(expected: ExpectedRevision) -> StreamState {
    match expected {
        ExpectedRevision::Any => StreamState::Any,
        ExpectedRevision::NoStream => StreamState::NoStream,
        ExpectedRevision::StreamExists => StreamState::StreamExists,
        ExpectedRevision::Exact(r) => StreamState::StreamRevision(r),
    }
}

/// `after` as a server start position: exclusive for subscriptions, inclusive for reads
/// (which skip it themselves).
fn to_start(after: Option<Position>) -> StreamPosition<kurrentdb::Position> {
    match after {
        None => StreamPosition::Start,
        Some(p) => StreamPosition::Position(kurrentdb::Position {
            commit: p.0,
            prepare: p.0,
        }),
    }
}

/// The position of a non-system event and whether `filter` keeps it.
fn sighted(resolved: &ResolvedEvent, filter: &EventFilter) -> Option<(Position, bool)> {
    let event = resolved.event.as_ref()?;
    let stream = event.stream_id();
    if stream.starts_with('$') || event.event_type.starts_with('$') {
        return None;
    }
    Some((
        Position(event.position.commit),
        filter.matches(stream, &event.event_type),
    ))
}

/// The server-side part of `filter`; the exact filter (exclusions included) is applied
/// again on the client.
fn server_filter(filter: &EventFilter) -> SubscriptionFilter {
    if !filter.categories.is_empty() {
        filter
            .categories
            .iter()
            .fold(SubscriptionFilter::on_stream_name(), |f, c| {
                f.add_prefix(format!("{c}-"))
            })
    } else if !filter.event_types.is_empty() {
        filter
            .event_types
            .iter()
            .fold(SubscriptionFilter::on_event_type(), |f, t| f.add_prefix(t))
    } else {
        SubscriptionFilter::on_event_type().exclude_system_events()
    }
}

fn to_event_data(event: &NewEvent, commit_ms: i64) -> Result<EventData, EventLogError> {
    let metadata = metadata::stamped(&event.metadata, commit_ms);
    // JSON bodies go as JSON (KurrentDB's projections and UI read them) without being
    // re-serialized: a FHIR resource must keep its exact bytes.
    let data = match std::str::from_utf8(&event.data)
        .ok()
        .and_then(|s| serde_json::value::RawValue::from_string(s.to_owned()).ok())
    {
        Some(raw) => EventData::json(&event.event_type, &raw).map_err(|e| {
            EventLogError::InvalidAppend(format!("event body of {}: {e}", event.event_id))
        })?,
        None => EventData::binary(&event.event_type, event.data.clone()),
    };
    Ok(data
        .id(event.event_id)
        .metadata(metadata::encode_json(&metadata)?.into()))
}

/// Our event from the server's, `None` for system events.
fn to_recorded(resolved: ResolvedEvent) -> Result<Option<RecordedEvent>, EventLogError> {
    let Some(event) = resolved.event else {
        return Ok(None);
    };
    let stream = event.stream_id().to_string();
    if stream.starts_with('$') || event.event_type.starts_with('$') {
        return Ok(None);
    }
    Ok(Some(RecordedEvent {
        position: Position(event.position.commit),
        stream,
        revision: event.revision,
        event_id: event.id,
        metadata: metadata::decode(&event.custom_metadata)?,
        event_type: event.event_type,
        data: event.data,
    }))
}

fn is_transient(e: &kurrentdb::Error) -> bool {
    matches!(
        e,
        kurrentdb::Error::ServerError(_)
            | kurrentdb::Error::ConnectionClosed
            | kurrentdb::Error::GrpcConnectionError(_)
            | kurrentdb::Error::NotLeaderException(_)
            | kurrentdb::Error::DeadlineExceeded
    )
}

fn map_err(e: kurrentdb::Error) -> EventLogError {
    match e {
        kurrentdb::Error::AccessDenied => EventLogError::Unavailable(
            "KurrentDB denied access (check the credentials in the connection string)".into(),
        ),
        kurrentdb::Error::ResourceDeleted => {
            EventLogError::InvalidAppend("the stream was deleted in KurrentDB".into())
        }
        kurrentdb::Error::Grpc {
            code: tonic::Code::InvalidArgument,
            message,
        } => EventLogError::InvalidAppend(message),
        other => EventLogError::Unavailable(format!("KurrentDB: {other}")),
    }
}
