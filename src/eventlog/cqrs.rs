//! cqrs-es persistence over any [`EventLog`]: aggregates written with cqrs-es
//! (`Aggregate::handle` / `apply`) persist to the embedded log or to KurrentDB unchanged.
//!
//! An aggregate instance is the stream `{Aggregate::TYPE}-{aggregate_id}`; cqrs-es's
//! one-based `sequence` is the stream revision plus one. The event body is the domain event's
//! JSON exactly, so projections read it without knowing cqrs-es; the event version and the
//! command metadata travel in the event metadata's `extra` field. Snapshots are not kept:
//! the log is the only store (cqrs-es's `new_aggregate_store` / `new_event_store`).

use std::sync::Arc;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use serde_json::{Map, Value};

use super::{
    Direction, EventFilter, EventLog, EventLogError, EventMetadata, ExpectedRevision, NewEvent,
    Position, RecordedEvent, StreamStart,
};

const PAGE: usize = 1000;
const VERSION_KEY: &str = "eventVersion";
const METADATA_KEY: &str = "commandMetadata";

/// A cqrs-es event repository backed by an [`EventLog`].
#[derive(Clone)]
pub struct EventLogRepository {
    log: Arc<dyn EventLog>,
}

impl EventLogRepository {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Self { log }
    }
}

fn stream_of<A: Aggregate>(aggregate_id: &str) -> String {
    format!("{}-{aggregate_id}", A::TYPE)
}

fn persistence_error(e: EventLogError) -> PersistenceError {
    match e {
        EventLogError::WrongExpectedVersion { .. } => PersistenceError::OptimisticLockError,
        EventLogError::Unavailable(_) | EventLogError::Closed => {
            PersistenceError::ConnectionError(Box::new(e))
        }
        EventLogError::Corrupt(_) => PersistenceError::DeserializationError(Box::new(e)),
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}

fn serialized<A: Aggregate>(event: RecordedEvent) -> Result<SerializedEvent, PersistenceError> {
    let payload: Value = event
        .json()
        .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?;
    let extra = event.metadata.extra.clone().unwrap_or_default();
    let event_version = extra
        .get(VERSION_KEY)
        .and_then(Value::as_str)
        .unwrap_or("1.0")
        .to_owned();
    let metadata = extra
        .get(METADATA_KEY)
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    Ok(SerializedEvent {
        aggregate_id: event.stream_id().to_owned(),
        sequence: event.revision as usize + 1,
        aggregate_type: A::TYPE.to_owned(),
        event_type: event.event_type,
        event_version,
        payload,
        metadata,
    })
}

impl EventLogRepository {
    async fn read_all_of(&self, stream: &str) -> Result<Vec<RecordedEvent>, PersistenceError> {
        let mut out = Vec::new();
        loop {
            let page = self
                .log
                .read_stream(
                    stream,
                    Direction::Forwards,
                    StreamStart::Revision(out.len() as u64),
                    PAGE,
                )
                .await
                .map_err(persistence_error)?;
            let done = page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }
}

impl PersistedEventRepository for EventLogRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.read_all_of(&stream_of::<A>(aggregate_id))
            .await?
            .into_iter()
            .map(serialized::<A>)
            .collect()
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        // Events with sequence > last_sequence: revisions from last_sequence on.
        let stream = stream_of::<A>(aggregate_id);
        let mut out = Vec::new();
        loop {
            let page = self
                .log
                .read_stream(
                    &stream,
                    Direction::Forwards,
                    StreamStart::Revision((last_sequence + out.len()) as u64),
                    PAGE,
                )
                .await
                .map_err(persistence_error)?;
            let done = page.len() < PAGE;
            for event in page {
                out.push(serialized::<A>(event)?);
            }
            if done {
                return Ok(out);
            }
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let stream = stream_of::<A>(&first.aggregate_id);
        let expected = match first.sequence {
            0 | 1 => ExpectedRevision::NoStream,
            n => ExpectedRevision::Exact(n as u64 - 2),
        };
        let new_events = events
            .iter()
            .map(|event| {
                let data = serde_json::to_vec(&event.payload)
                    .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
                let mut extra = Map::new();
                extra.insert(
                    VERSION_KEY.into(),
                    Value::String(event.event_version.clone()),
                );
                extra.insert(METADATA_KEY.into(), event.metadata.clone());
                Ok(
                    NewEvent::new(event.event_type.clone(), data).with_metadata(EventMetadata {
                        extra: Some(extra),
                        ..EventMetadata::default()
                    }),
                )
            })
            .collect::<Result<Vec<_>, PersistenceError>>()?;
        self.log
            .append(&stream, expected, new_events)
            .await
            .map(|_| ())
            .map_err(persistence_error)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.read_all_of(&stream_of::<A>(aggregate_id)).await?;
        let (mut feed, stream) = ReplayStream::new(events.len().max(1));
        for event in events {
            feed.push(serialized::<A>(event)).await?;
        }
        Ok(stream)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let (mut feed, stream) = ReplayStream::new(PAGE);
        let log = self.log.clone();
        tokio::spawn(async move {
            let filter = EventFilter::categories([A::TYPE]);
            let mut after: Option<Position> = None;
            loop {
                let page = match log.read_all(after, &filter, PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = feed.push(Err(persistence_error(e))).await;
                        return;
                    }
                };
                let done = page.len() < PAGE;
                after = page.last().map(|e| e.position).or(after);
                for event in page {
                    if feed.push(serialized::<A>(event)).await.is_err() {
                        return;
                    }
                }
                if done {
                    return;
                }
            }
        });
        Ok(stream)
    }
}
