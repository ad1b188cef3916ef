//! The atomic multi-stream commit on KurrentDB: the v2 `MultiStreamAppend` call
//! (KurrentDB 25.1+), which the official Rust client does not expose, over Sphere's own
//! tonic client (see `docs/adr/0001-multi-stream-commit.md`).
//!
//! One request carries every stream with its own expected revision; the server checks them
//! all and writes every event in one transaction or none. A server without the call answers
//! `Unimplemented`, and the commit fails with [`EventLogError::Unavailable`]: Sphere never
//! falls back to several independent appends, which could leave half a FHIR transaction.
//! On a cluster, a follower's `not-leader` answer names the leader; the commit is resent
//! there once and later commits go straight to it.

use std::sync::{Arc, Mutex};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use tonic::{Code, Request};

use super::metadata;
use super::proto::kurrentdb::protocol::v2::{
    append_stream_failure, multi_stream_append_response,
    streams_service_client::StreamsServiceClient, AppendRecord, AppendStreamFailure,
    AppendStreamRequest, MultiStreamAppendRequest,
};
use super::settings::ConnectionString;
use crate::eventlog::{EventLogError, ExpectedRevision, StreamWrite};

/// The v2 protocol's expected-revision constants.
const EXPECT_NO_STREAM: i64 = -1;
const EXPECT_ANY: i64 = -2;
const EXPECT_EXISTS: i64 = -4;

/// A client for KurrentDB's v2 streams service: the connection string's first node, then
/// whichever node it names as the cluster leader.
#[derive(Clone)]
pub(crate) struct MultiStreamAppender {
    node: Arc<Mutex<Node>>,
    tls: Option<ClientTlsConfig>,
    authorization: Option<MetadataValue<Ascii>>,
}

#[derive(Clone)]
struct Node {
    target: String,
    client: StreamsServiceClient<Channel>,
}

impl MultiStreamAppender {
    /// Prepares the channel; it connects on first use.
    pub(crate) fn new(conn: &ConnectionString) -> Result<Self, EventLogError> {
        let tls = if conn.secure {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(ca) = &conn.tls_ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    EventLogError::Unavailable(format!("cannot read tlsCAFile {ca}: {e}"))
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            Some(tls)
        } else {
            None
        };
        let authorization = match &conn.credentials {
            Some((user, password)) => {
                use base64::Engine as _;
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}").parse().map_err(|_| {
                    EventLogError::Unavailable("credentials are not valid header text".into())
                })?)
            }
            None => None,
        };
        let node = connect_lazy(&conn.host, conn.port, tls.as_ref())?;
        Ok(Self {
            node: Arc::new(Mutex::new(node)),
            tls,
            authorization,
        })
    }

    fn current(&self) -> Node {
        // A poisoned lock only means another task panicked mid-swap; the node is still whole.
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Commits `writes` atomically; returns each stream's new revision, in order.
    /// Every event must already carry its commit time.
    pub(crate) async fn append(&self, writes: &[StreamWrite]) -> Result<Vec<u64>, EventLogError> {
        let input = writes
            .iter()
            .map(|write| {
                let records = write
                    .events
                    .iter()
                    .map(|event| {
                        let is_json =
                            serde_json::from_slice::<serde::de::IgnoredAny>(&event.data).is_ok();
                        Ok(AppendRecord {
                            record_id: Some(event.event_id.to_string()),
                            properties: metadata::encode_properties(
                                &event.metadata,
                                &event.event_type,
                                is_json,
                            )?,
                            data: event.data.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, EventLogError>>()?;
                Ok(AppendStreamRequest {
                    stream: write.stream.clone(),
                    records,
                    expected_revision: Some(expected_to_v2(write.expected)),
                })
            })
            .collect::<Result<Vec<_>, EventLogError>>()?;
        let message = MultiStreamAppendRequest { input };
        let mut node = self.current();
        let mut redirected = false;
        let response = loop {
            let mut request = Request::new(message.clone());
            if let Some(auth) = &self.authorization {
                request.metadata_mut().insert("authorization", auth.clone());
            }
            // Writes must reach the leader of a cluster; a follower names it.
            request
                .metadata_mut()
                .insert("requires-leader", MetadataValue::from_static("true"));
            match node.client.clone().multi_stream_append(request).await {
                Ok(response) => break response.into_inner(),
                Err(status) => match leader_of(&status) {
                    Some((host, port)) if !redirected => {
                        redirected = true;
                        node = connect_lazy(&host, port, self.tls.as_ref())?;
                        *self.node.lock().unwrap_or_else(|p| p.into_inner()) = node.clone();
                    }
                    _ => return Err(status_error(&node.target, status)),
                },
            }
        };
        match response.result {
            Some(multi_stream_append_response::Result::Success(success)) => {
                if success.output.len() != writes.len() {
                    return Err(EventLogError::Unavailable(format!(
                        "KurrentDB answered a commit of {} streams with {} results",
                        writes.len(),
                        success.output.len()
                    )));
                }
                success
                    .output
                    .iter()
                    .map(|out| {
                        u64::try_from(out.stream_revision).map_err(|_| {
                            EventLogError::Unavailable(format!(
                                "KurrentDB reported revision {} for stream {}",
                                out.stream_revision, out.stream
                            ))
                        })
                    })
                    .collect()
            }
            Some(multi_stream_append_response::Result::Failure(failure)) => {
                Err(first_failure(writes, failure.output))
            }
            None => Err(EventLogError::Unavailable(
                "KurrentDB answered a multi-stream append with neither success nor failure".into(),
            )),
        }
    }
}

fn status_error(target: &str, status: tonic::Status) -> EventLogError {
    match status.code() {
        Code::Unimplemented | Code::NotFound => EventLogError::Unavailable(format!(
            "KurrentDB at {} does not offer the multi-stream append (KurrentDB 25.1 or later \
                 is required for atomic multi-stream commits): {}",
            target,
            status.message()
        )),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            EventLogError::InvalidAppend(status.message().to_string())
        }
        Code::AlreadyExists => EventLogError::InvalidAppend(status.message().to_string()),
        Code::Unauthenticated | Code::PermissionDenied => EventLogError::Unavailable(format!(
            "KurrentDB refused the multi-stream append: access denied ({})",
            status.message()
        )),
        _ => EventLogError::Unavailable(format!("KurrentDB multi-stream append failed: {status}")),
    }
}

/// A lazily connecting client for one node.
fn connect_lazy(
    host: &str,
    port: u16,
    tls: Option<&ClientTlsConfig>,
) -> Result<Node, EventLogError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let target = format!("{scheme}://{host}:{port}");
    let mut endpoint = Endpoint::from_shared(target.clone())
        .map_err(|e| EventLogError::Unavailable(format!("KurrentDB address {target}: {e}")))?;
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .map_err(|e| EventLogError::Unavailable(format!("KurrentDB TLS setup: {e}")))?;
    }
    Ok(Node {
        client: StreamsServiceClient::new(endpoint.connect_lazy()),
        target,
    })
}

/// The leader a follower names when it refuses a write (KurrentDB's `not-leader` answer).
fn leader_of(status: &tonic::Status) -> Option<(String, u16)> {
    let meta = status.metadata();
    if meta.get("exception")?.to_str().ok()? != "not-leader" {
        return None;
    }
    let host = meta.get("leader-endpoint-host")?.to_str().ok()?.to_string();
    let port = meta
        .get("leader-endpoint-port")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some((host, port))
}

fn expected_to_v2(expected: ExpectedRevision) -> i64 {
    match expected {
        ExpectedRevision::Any => EXPECT_ANY,
        ExpectedRevision::NoStream => EXPECT_NO_STREAM,
        ExpectedRevision::StreamExists => EXPECT_EXISTS,
        // Revisions beyond i64 cannot exist in KurrentDB; such an expectation can only fail.
        ExpectedRevision::Exact(r) => i64::try_from(r).unwrap_or(i64::MAX),
    }
}

/// Reads a v2 expected revision back (the protocol test double's side).
pub(crate) fn expected_from_v2(value: Option<i64>) -> Result<ExpectedRevision, String> {
    match value {
        None | Some(EXPECT_ANY) => Ok(ExpectedRevision::Any),
        Some(EXPECT_NO_STREAM) => Ok(ExpectedRevision::NoStream),
        Some(EXPECT_EXISTS) => Ok(ExpectedRevision::StreamExists),
        Some(r) if r >= 0 => Ok(ExpectedRevision::Exact(r as u64)),
        Some(other) => Err(format!("unknown expected revision {other}")),
    }
}

/// The error of the first failed stream, in the order the caller listed them.
fn first_failure(writes: &[StreamWrite], failures: Vec<AppendStreamFailure>) -> EventLogError {
    let position_of = |f: &AppendStreamFailure| {
        writes
            .iter()
            .position(|w| w.stream == f.stream)
            .unwrap_or(usize::MAX)
    };
    let Some(failure) = failures.into_iter().min_by_key(position_of) else {
        return EventLogError::Unavailable("KurrentDB refused the commit without a reason".into());
    };
    let expected = writes
        .iter()
        .find(|w| w.stream == failure.stream)
        .map(|w| w.expected)
        .unwrap_or(ExpectedRevision::Any);
    match failure.error {
        Some(append_stream_failure::Error::WrongExpectedRevision(wrong)) => {
            EventLogError::WrongExpectedVersion {
                stream: failure.stream,
                expected,
                actual: u64::try_from(wrong.stream_revision).ok(),
            }
        }
        Some(append_stream_failure::Error::AccessDenied(denied)) => {
            EventLogError::Unavailable(format!(
                "KurrentDB denied access to {}: {}",
                failure.stream, denied.reason
            ))
        }
        Some(append_stream_failure::Error::StreamDeleted(_)) => EventLogError::InvalidAppend(
            format!("stream {} was deleted in KurrentDB", failure.stream),
        ),
        Some(append_stream_failure::Error::TransactionMaxSizeExceeded(max)) => {
            EventLogError::InvalidAppend(format!(
                "the commit is larger than KurrentDB's transaction limit of {} bytes",
                max.max_size
            ))
        }
        None => EventLogError::Unavailable(format!(
            "KurrentDB refused the commit on {} without a reason",
            failure.stream
        )),
    }
}
