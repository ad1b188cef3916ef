//! Wire messages of the protocol test double to and from the event log's types.

use std::time::SystemTime;

use regex::Regex;
use tonic::Status;
use uuid::Uuid;

use super::super::metadata;
use super::super::multi_append::expected_from_v2;
use super::super::proto::event_store::client::{self as common, streams as v1};
use super::super::proto::kurrentdb::protocol::v2;
use crate::eventlog::{
    EventMetadata, ExpectedRevision, NewEvent, Position, RecordedEvent, StreamWrite,
};

use v1::read_req::options::{filter_options, uuid_option, FilterOption};
use v1::read_req::Options;

/// KurrentDB's default search window when the client names none.
const DEFAULT_WINDOW: u64 = 32;

/// A `$all` filter as the protocol states it.
pub(super) struct Filter {
    rule: Option<Rule>,
}

struct Rule {
    on_stream: bool,
    prefixes: Vec<String>,
    regex: Option<Regex>,
}

impl Filter {
    pub(super) fn from_proto(option: Option<&FilterOption>) -> Result<Self, Status> {
        let Some(FilterOption::Filter(options)) = option else {
            return Ok(Self { rule: None });
        };
        let (on_stream, expression) = match &options.filter {
            Some(filter_options::Filter::StreamIdentifier(e)) => (true, e),
            Some(filter_options::Filter::EventType(e)) => (false, e),
            None => return Ok(Self { rule: None }),
        };
        let regex = if expression.regex.is_empty() {
            None
        } else {
            Some(
                Regex::new(&expression.regex)
                    .map_err(|e| Status::invalid_argument(format!("filter regex: {e}")))?,
            )
        };
        Ok(Self {
            rule: Some(Rule {
                on_stream,
                prefixes: expression.prefix.clone(),
                regex,
            }),
        })
    }

    pub(super) fn is_some(&self) -> bool {
        self.rule.is_some()
    }

    /// Prefixes take precedence over the regex, as on the server.
    pub(super) fn matches(&self, stream: &str, event_type: &str) -> bool {
        let Some(rule) = &self.rule else {
            return true;
        };
        let subject = if rule.on_stream { stream } else { event_type };
        if !rule.prefixes.is_empty() {
            return rule
                .prefixes
                .iter()
                .any(|p| subject.starts_with(p.as_str()));
        }
        rule.regex.as_ref().is_none_or(|r| r.is_match(subject))
    }
}

/// Events considered between two checkpoint messages of a filtered subscription.
pub(super) fn checkpoint_interval(option: Option<&FilterOption>) -> u64 {
    let Some(FilterOption::Filter(options)) = option else {
        return DEFAULT_WINDOW;
    };
    let window = match options.window {
        Some(filter_options::Window::Max(max)) if max > 0 => u64::from(max),
        _ => DEFAULT_WINDOW,
    };
    window * u64::from(options.checkpoint_interval_multiplier.max(1))
}

pub(super) fn wants_structured_ids(options: &Options) -> bool {
    matches!(
        options
            .uuid_option
            .as_ref()
            .and_then(|u| u.content.as_ref()),
        Some(uuid_option::Content::Structured(_))
    )
}

pub(super) fn stream_name(id: Option<&common::StreamIdentifier>) -> Result<String, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("missing stream identifier"))?;
    String::from_utf8(id.stream_name.clone())
        .map_err(|_| Status::invalid_argument("stream name is not UTF-8"))
}

pub(super) fn expected_from_v1(
    option: Option<v1::append_req::options::ExpectedStreamRevision>,
) -> Result<ExpectedRevision, Status> {
    use v1::append_req::options::ExpectedStreamRevision as E;
    match option {
        Some(E::Revision(r)) => Ok(ExpectedRevision::Exact(r)),
        Some(E::NoStream(_)) => Ok(ExpectedRevision::NoStream),
        Some(E::Any(_)) => Ok(ExpectedRevision::Any),
        Some(E::StreamExists(_)) => Ok(ExpectedRevision::StreamExists),
        None => Err(Status::invalid_argument("missing expected stream revision")),
    }
}

pub(super) fn wrong_expected_version(
    expected: ExpectedRevision,
    actual: Option<u64>,
) -> v1::append_resp::WrongExpectedVersion {
    use v1::append_resp::wrong_expected_version::{CurrentRevisionOption, ExpectedRevisionOption};
    v1::append_resp::WrongExpectedVersion {
        current_revision_option: Some(match actual {
            Some(r) => CurrentRevisionOption::CurrentRevision(r),
            None => CurrentRevisionOption::CurrentNoStream(common::Empty {}),
        }),
        expected_revision_option: Some(match expected {
            ExpectedRevision::Exact(r) => ExpectedRevisionOption::ExpectedRevision(r),
            ExpectedRevision::Any => ExpectedRevisionOption::ExpectedAny(common::Empty {}),
            ExpectedRevision::StreamExists => {
                ExpectedRevisionOption::ExpectedStreamExists(common::Empty {})
            }
            ExpectedRevision::NoStream => {
                ExpectedRevisionOption::ExpectedNoStream(common::Empty {})
            }
        }),
        ..Default::default()
    }
}

fn uuid_from_proto(id: Option<common::Uuid>) -> Result<Uuid, Status> {
    match id.and_then(|u| u.value) {
        Some(common::uuid::Value::Structured(s)) => {
            let bits = (u128::from(s.most_significant_bits as u64) << 64)
                | u128::from(s.least_significant_bits as u64);
            Ok(Uuid::from_u128(bits))
        }
        Some(common::uuid::Value::String(s)) => s
            .parse()
            .map_err(|_| Status::invalid_argument("event id is not a UUID")),
        // The server assigns an id when the client sends none.
        None => Ok(Uuid::new_v4()),
    }
}

fn uuid_to_proto(id: Uuid, structured: bool) -> common::Uuid {
    let value = if structured {
        let bits = id.as_u128();
        common::uuid::Value::Structured(common::uuid::Structured {
            most_significant_bits: (bits >> 64) as u64 as i64,
            least_significant_bits: bits as u64 as i64,
        })
    } else {
        common::uuid::Value::String(id.to_string())
    };
    common::Uuid { value: Some(value) }
}

/// Metadata the backing log can hold: Sphere's own JSON, or default for anything else.
fn metadata_from(bytes: &[u8]) -> EventMetadata {
    metadata::decode(bytes).unwrap_or_default()
}

pub(super) fn new_event_from_v1(
    message: v1::append_req::ProposedMessage,
) -> Result<NewEvent, Status> {
    let event_type = message
        .metadata
        .get("type")
        .cloned()
        .ok_or_else(|| Status::invalid_argument("event without a type"))?;
    Ok(NewEvent {
        event_id: uuid_from_proto(message.id)?,
        event_type,
        data: message.data,
        metadata: metadata_from(&message.custom_metadata),
    })
}

pub(super) fn stream_write_from_v2(
    request: v2::AppendStreamRequest,
) -> Result<StreamWrite, Status> {
    let expected = expected_from_v2(request.expected_revision).map_err(Status::invalid_argument)?;
    let events = request
        .records
        .into_iter()
        .map(|record| {
            let event_id = match &record.record_id {
                Some(id) => id.parse().map_err(|_| {
                    Status::invalid_argument(format!("Could not parse RecordId {id:?} to GUID"))
                })?,
                None => Uuid::new_v4(),
            };
            let event_type = record
                .properties
                .get(metadata::SCHEMA_NAME)
                .map(metadata::property_text)
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "required property {} is missing",
                        metadata::SCHEMA_NAME
                    ))
                })?;
            if !record.properties.contains_key(metadata::SCHEMA_FORMAT) {
                return Err(Status::invalid_argument(format!(
                    "required property {} is missing",
                    metadata::SCHEMA_FORMAT
                )));
            }
            // What KurrentDB 25.1 stores as the event's metadata: the properties as a JSON
            // object of strings.
            let stored: serde_json::Map<String, serde_json::Value> = record
                .properties
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        serde_json::Value::String(metadata::property_text(v)),
                    )
                })
                .collect();
            let stored = serde_json::to_vec(&stored)
                .map_err(|e| Status::internal(format!("metadata: {e}")))?;
            Ok(NewEvent {
                event_id,
                event_type,
                data: record.data,
                metadata: metadata_from(&stored),
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(StreamWrite {
        stream: request.stream,
        expected,
        events,
    })
}

/// A recorded event in the protocol's read-response form.
pub(super) struct WireEvent(pub(super) RecordedEvent);

impl WireEvent {
    pub(super) fn into_read_resp(self, structured_ids: bool) -> v1::ReadResp {
        let e = self.0;
        let is_json = serde_json::from_slice::<serde::de::IgnoredAny>(&e.data).is_ok();
        let custom_metadata = serde_json::to_vec(&e.metadata).unwrap_or_default();
        let mut wire_metadata = std::collections::HashMap::new();
        wire_metadata.insert("type".to_string(), e.event_type.clone());
        wire_metadata.insert(
            "content-type".to_string(),
            if is_json {
                "application/json"
            } else {
                "application/octet-stream"
            }
            .to_string(),
        );
        // .NET ticks (100 ns) since the Unix epoch, as KurrentDB sends `created`.
        wire_metadata.insert(
            "created".to_string(),
            (e.metadata.commit_ms.max(0) * 10_000).to_string(),
        );
        let recorded = v1::read_resp::read_event::RecordedEvent {
            id: Some(uuid_to_proto(e.event_id, structured_ids)),
            stream_identifier: Some(common::StreamIdentifier {
                stream_name: e.stream.into_bytes(),
            }),
            stream_revision: e.revision,
            prepare_position: e.position.0,
            commit_position: e.position.0,
            metadata: wire_metadata,
            custom_metadata: custom_metadata.into(),
            data: e.data,
        };
        v1::ReadResp {
            content: Some(v1::read_resp::Content::Event(v1::read_resp::ReadEvent {
                event: Some(recorded),
                link: None,
                position: Some(v1::read_resp::read_event::Position::CommitPosition(
                    e.position.0,
                )),
            })),
        }
    }
}

pub(super) fn stream_not_found(stream: &str) -> v1::ReadResp {
    v1::ReadResp {
        content: Some(v1::read_resp::Content::StreamNotFound(
            v1::read_resp::StreamNotFound {
                stream_identifier: Some(common::StreamIdentifier {
                    stream_name: stream.as_bytes().to_vec(),
                }),
            },
        )),
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

pub(super) fn caught_up(last: Option<Position>) -> v1::ReadResp {
    v1::ReadResp {
        content: Some(v1::read_resp::Content::CaughtUp(v1::read_resp::CaughtUp {
            timestamp: Some(now()),
            stream_revision: None,
            position: last.map(|p| v1::read_resp::Position {
                commit_position: p.0,
                prepare_position: p.0,
            }),
        })),
    }
}

pub(super) fn checkpoint(position: Position) -> v1::ReadResp {
    v1::ReadResp {
        content: Some(v1::read_resp::Content::Checkpoint(
            v1::read_resp::Checkpoint {
                commit_position: position.0,
                prepare_position: position.0,
                timestamp: Some(now()),
            },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_survive_both_wire_forms() {
        let id = Uuid::new_v4();
        for structured in [true, false] {
            assert_eq!(
                uuid_from_proto(Some(uuid_to_proto(id, structured))).unwrap(),
                id
            );
        }
    }

    #[test]
    fn prefix_filters_take_precedence_over_regex() {
        let f = Filter {
            rule: Some(Rule {
                on_stream: true,
                prefixes: vec!["Patient-".into()],
                regex: Some(Regex::new("^Obs").unwrap()),
            }),
        };
        assert!(f.matches("Patient-1", "X"));
        assert!(!f.matches("Observation-1", "X"));
        let system = Filter {
            rule: Some(Rule {
                on_stream: false,
                prefixes: vec![],
                regex: Some(Regex::new(r"^[^\$].*").unwrap()),
            }),
        };
        assert!(system.matches("$stats", "Created"));
        assert!(!system.matches("x-1", "$>"));
    }
}
