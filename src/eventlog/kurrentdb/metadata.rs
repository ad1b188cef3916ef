//! How Sphere's [`EventMetadata`] travels through KurrentDB.
//!
//! - **v1 append** (one stream): the metadata is the event's custom metadata, as the JSON of
//!   [`EventMetadata`] (EventStoreDB's well-known `$correlationId` / `$causationId` keys, so
//!   KurrentDB's own tooling understands it).
//! - **v2 multi-stream append**: there is no custom metadata field; the server stores every
//!   record property in the custom metadata instead, as a JSON object whose values are all
//!   strings, plus its own `$schema.name` / `$schema.data-format` keys. So each metadata key
//!   is sent as a string property (objects and numbers as their JSON text) and
//!   [`decode`] accepts both shapes.
//!
//! `commitMs` is stamped here, on the client, at append time: KurrentDB's own `created`
//! timestamp reaches the Rust client truncated to whole seconds, and Bulk Data `_since`
//! needs milliseconds. An event that already carries a commit time (one copied by
//! `sphere migrate`) keeps it.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::proto::kurrentdb::protocol::v2::{dynamic_value, DynamicValue};
use crate::eventlog::{EventLogError, EventMetadata};

/// Property holding the event type in the v2 protocol.
pub(crate) const SCHEMA_NAME: &str = "$schema.name";
/// Property holding the data format in the v2 protocol.
pub(crate) const SCHEMA_FORMAT: &str = "$schema.data-format";

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The metadata as it will be committed: with a commit time.
pub(crate) fn stamped(metadata: &EventMetadata, commit_ms: i64) -> EventMetadata {
    let mut metadata = metadata.clone();
    if metadata.commit_ms == 0 {
        metadata.commit_ms = commit_ms;
    }
    metadata
}

/// Custom-metadata bytes for a v1 append.
pub(crate) fn encode_json(metadata: &EventMetadata) -> Result<Vec<u8>, EventLogError> {
    serde_json::to_vec(metadata)
        .map_err(|e| EventLogError::InvalidAppend(format!("event metadata: {e}")))
}

/// Record properties for a v2 append: the metadata keys as strings, and the event type.
pub(crate) fn encode_properties(
    metadata: &EventMetadata,
    event_type: &str,
    is_json: bool,
) -> Result<HashMap<String, DynamicValue>, EventLogError> {
    let value = serde_json::to_value(metadata)
        .map_err(|e| EventLogError::InvalidAppend(format!("event metadata: {e}")))?;
    let mut properties = HashMap::new();
    if let Value::Object(map) = value {
        for (key, value) in map {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            properties.insert(key, string_value(text));
        }
    }
    properties.insert(SCHEMA_NAME.into(), string_value(event_type.into()));
    properties.insert(
        SCHEMA_FORMAT.into(),
        string_value(if is_json { "Json" } else { "Bytes" }.into()),
    );
    Ok(properties)
}

fn string_value(s: String) -> DynamicValue {
    DynamicValue {
        kind: Some(dynamic_value::Kind::StringValue(s)),
    }
}

/// A property value as the text KurrentDB puts into the metadata JSON.
pub(crate) fn property_text(value: &DynamicValue) -> String {
    use dynamic_value::Kind;
    match &value.kind {
        Some(Kind::StringValue(s)) => s.clone(),
        Some(Kind::Int32Value(v)) => v.to_string(),
        Some(Kind::Int64Value(v)) => v.to_string(),
        Some(Kind::DoubleValue(v)) => v.to_string(),
        Some(Kind::FloatValue(v)) => v.to_string(),
        Some(Kind::BooleanValue(v)) => if *v { "True" } else { "False" }.into(),
        Some(Kind::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
        None => String::new(),
    }
}

/// Sphere's metadata from an event's custom metadata, written by either append path.
///
/// Empty or non-JSON metadata (an event some other tool wrote into the store) reads as
/// default metadata rather than failing every read of `$all`.
pub(crate) fn decode(bytes: &[u8]) -> Result<EventMetadata, EventLogError> {
    if bytes.is_empty() {
        return Ok(EventMetadata::default());
    }
    if let Ok(metadata) = serde_json::from_slice::<EventMetadata>(bytes) {
        return Ok(metadata);
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
        return Ok(EventMetadata::default());
    };
    // The v2 shape: every value is a string. Sphere's only string-typed fields are the two
    // ids; every other value was sent as its JSON text (objects, numbers), so read it back.
    let mut fixed = Map::with_capacity(map.len());
    for (key, value) in map {
        let value = match value {
            Value::String(text) if !key.starts_with('$') => {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            value => value,
        };
        fixed.insert(key, value);
    }
    serde_json::from_value(Value::Object(fixed))
        .map_err(|e| EventLogError::Corrupt(format!("event metadata does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::Actor;
    use uuid::Uuid;

    fn sample() -> EventMetadata {
        EventMetadata {
            correlation_id: Some(Uuid::new_v4()),
            causation_id: Some(Uuid::nil()),
            actor: Some(Actor {
                client_id: Some("app".into()),
                user: Some("Practitioner/1".into()),
                token_id: None,
            }),
            commit_ms: 1_700_000_000_123,
            extra: Some(
                serde_json::json!({"eventVersion": "1", "n": 1.50, "tags": ["a"]})
                    .as_object()
                    .cloned()
                    .unwrap(),
            ),
        }
    }

    #[test]
    fn v1_metadata_round_trips() {
        let m = sample();
        assert_eq!(decode(&encode_json(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn v2_properties_decode_from_the_servers_string_map() {
        // KurrentDB 25.1 writes the properties of a v2 record as a JSON object of strings.
        let m = sample();
        let props = encode_properties(&m, "ResourceCreated", true).unwrap();
        let as_server_writes: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(property_text(v))))
            .collect();
        let bytes = serde_json::to_vec(&as_server_writes).unwrap();
        assert_eq!(decode(&bytes).unwrap(), m);
        assert_eq!(
            props.get(SCHEMA_NAME).map(property_text).as_deref(),
            Some("ResourceCreated")
        );
    }

    #[test]
    fn commit_time_is_stamped_once() {
        let mut m = sample();
        assert_eq!(stamped(&m, 5).commit_ms, 1_700_000_000_123);
        m.commit_ms = 0;
        assert_eq!(stamped(&m, 5).commit_ms, 5);
    }

    #[test]
    fn foreign_metadata_reads_as_default() {
        assert_eq!(decode(b"").unwrap(), EventMetadata::default());
        assert_eq!(decode(b"not json").unwrap(), EventMetadata::default());
    }
}
