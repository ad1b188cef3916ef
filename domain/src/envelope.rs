//! The shape of an event as the log stores it and hands it back.
//!
//! These types are shared by every event-log backend (`src` crate), every projection
//! (`sphere-projections`) and every aggregate. They carry no IO: the payload is the
//! event's JSON bytes exactly as written, so that a FHIR resource read back is
//! byte-identical to what was appended.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A position in the global (`$all`) order of the log. Strictly increasing with commit
/// order; opaque apart from its ordering. Subscriptions and reads start *after* a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Who caused an event. Never a secret: token ids are `jti`s, not tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// Event metadata, serialized with EventStoreDB's well-known keys so that KurrentDB's own
/// tooling (correlation/causation projections, the UI) understands it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    #[serde(
        rename = "$correlationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub correlation_id: Option<Uuid>,
    #[serde(
        rename = "$causationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub causation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    /// Commit time in Unix milliseconds, stamped by the log when the event is committed.
    /// (EventStoreDB's own `created` is only second-precise in some clients, and Bulk Data
    /// `_since` needs milliseconds.) Zero on a [`NewEvent`]: the log fills it in.
    #[serde(rename = "commitMs", default)]
    pub commit_ms: i64,
    /// Further metadata a writer wants to keep with the event (e.g. cqrs-es's event version
    /// and command metadata). Never secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An event to append. `event_id` makes retries idempotent: appending the same ids to the
/// same stream again succeeds without writing twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    /// JSON bytes of the event body.
    pub data: Bytes,
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// A new event with a fresh time-ordered (v7) id.
    pub fn new(event_type: impl Into<String>, data: impl Into<Bytes>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            data: data.into(),
            metadata: EventMetadata::default(),
        }
    }

    /// A new event whose body is `value` serialized as JSON.
    pub fn json<T: Serialize>(
        event_type: impl Into<String>,
        value: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::new(event_type, serde_json::to_vec(value)?))
    }

    pub fn with_metadata(mut self, metadata: EventMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }
}

/// An event as committed to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: String,
    /// Zero-based revision within `stream`.
    pub revision: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub data: Bytes,
    pub metadata: EventMetadata,
}

impl RecordedEvent {
    /// The stream's category: the text before the first `-` (EventStoreDB's `$ce-` rule).
    pub fn category(&self) -> &str {
        category_of(&self.stream)
    }

    /// The text after the first `-`: the aggregate id (`Patient-123` -> `123`).
    pub fn stream_id(&self) -> &str {
        self.stream
            .split_once('-')
            .map(|(_, id)| id)
            .unwrap_or(&self.stream)
    }

    /// Commit time in Unix milliseconds.
    pub fn commit_ms(&self) -> i64 {
        self.metadata.commit_ms
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }
}

/// The category of a stream name: the text before the first `-`, or the whole name.
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map(|(c, _)| c).unwrap_or(stream)
}

/// Which events of `$all` a read or subscription wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Keep events whose stream category is one of these (empty: every category).
    pub categories: Vec<String>,
    /// Keep events of these types (empty: every type).
    pub event_types: Vec<String>,
    /// Drop events whose stream category is one of these, whatever the lists above say.
    pub excluded_categories: Vec<String>,
}

impl EventFilter {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn categories<I, S>(categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            categories: categories.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    pub fn event_types<I, S>(types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            event_types: types.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// This filter, but without the events of `categories`.
    pub fn except_categories<I, S>(mut self, categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.excluded_categories
            .extend(categories.into_iter().map(Into::into));
        self
    }

    pub fn is_all(&self) -> bool {
        self.categories.is_empty()
            && self.event_types.is_empty()
            && self.excluded_categories.is_empty()
    }

    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        let category = category_of(stream);
        (self.categories.is_empty() || self.categories.iter().any(|c| c == category))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
            && !self.excluded_categories.iter().any(|c| c == category)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_is_text_before_first_dash() {
        assert_eq!(category_of("Patient-123"), "Patient");
        assert_eq!(category_of("grant-a-b"), "grant");
        assert_eq!(category_of("nodash"), "nodash");
    }

    #[test]
    fn metadata_uses_eventstore_keys() {
        let m = EventMetadata {
            correlation_id: Some(Uuid::nil()),
            causation_id: None,
            actor: Some(Actor {
                client_id: Some("app".into()),
                ..Actor::default()
            }),
            commit_ms: 5,
            extra: None,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"{"$correlationId":"00000000-0000-0000-0000-000000000000","actor":{"client_id":"app"},"commitMs":5}"#
        );
        assert_eq!(serde_json::from_str::<EventMetadata>(&json).unwrap(), m);
    }

    #[test]
    fn filter_matches_category_and_type() {
        let f = EventFilter::categories(["Patient"]);
        assert!(f.matches("Patient-1", "ResourceCreated"));
        assert!(!f.matches("Observation-1", "ResourceCreated"));
        let f = EventFilter::event_types(["ResourceDeleted"]);
        assert!(f.matches("Observation-1", "ResourceDeleted"));
        assert!(!f.matches("Observation-1", "ResourceCreated"));
        let f = EventFilter::all().except_categories(["audit"]);
        assert!(f.matches("Patient-1", "ResourceCreated"));
        assert!(!f.matches("audit-2026-01-01", "AccessRecorded"));
        assert!(!f.is_all());
    }
}
