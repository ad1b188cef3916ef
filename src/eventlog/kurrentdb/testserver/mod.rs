//! **PROTOCOL TEST DOUBLE — NOT KurrentDB.**
//!
//! A small in-process gRPC server that speaks the subset of KurrentDB's wire protocol Sphere's
//! adapter uses, so that the adapter's wire usage is tested through the *official client* on
//! machines where no KurrentDB server can run (CI here). It is backed by any [`EventLog`]
//! (the tests use the embedded SQLite log) and implements:
//!
//! - `event_store.client.streams.Streams/Append`: expected-revision checks answered with the
//!   protocol's `WrongExpectedVersion` message, idempotent retries;
//! - `event_store.client.streams.Streams/Read`: stream reads (forwards, backwards, missing
//!   streams answered with `StreamNotFound`); `$all` reads forwards with stream-name or
//!   event-type filters (prefixes or regex); backwards reads of `$all` from the end or a position;
//!   catch-up subscriptions to `$all` with a confirmation, filtered events, `Checkpoint`
//!   messages every `window × multiplier` considered events, and `CaughtUp`;
//! - `kurrentdb.protocol.v2.StreamsService/MultiStreamAppend`: the atomic multi-stream
//!   append, storing record properties as the event metadata the way KurrentDB 25.1 does.
//!
//! Everything else (deletes, stream subscriptions, batch append, persistent subscriptions,
//! projections, server features, gossip) answers `Unimplemented`, which the official client
//! treats as an older single node. What it does not prove: KurrentDB's storage, clustering,
//! performance, or any behaviour the real server has and this double lacks. Run the same
//! suite against a real server with `SPHERE_TEST_EVENTSTORE_URL` for that.

// tonic's handler signatures return `Status`; the helpers do too rather than boxing it.
#![allow(clippy::result_large_err)]

mod convert;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::proto::event_store::client::streams::{
    self as v1,
    read_req::options::{AllOptions, StreamOptions},
    streams_server::{Streams, StreamsServer},
};
use super::proto::kurrentdb::protocol::v2::{
    self as v2,
    streams_service_server::{StreamsService, StreamsServiceServer},
};
use crate::eventlog::{EventFilter, EventLog, EventLogError, Position, SubscriptionMessage};
use convert::{Filter, WireEvent};

/// Events one inner read asks the backing log for.
const PAGE: usize = 1024;

/// How a test double behaves.
#[derive(Debug, Clone)]
pub struct DoubleOptions {
    /// Offer the v2 multi-stream append (KurrentDB 25.1+); `false` acts as an older server.
    pub multi_stream_append: bool,
    /// Where to listen; a free loopback port when `None`.
    pub address: Option<SocketAddr>,
    /// Act as a cluster follower for the v2 multi-stream append: refuse it with KurrentDB's
    /// `not-leader` answer naming this leader.
    pub follower_of: Option<SocketAddr>,
}

impl Default for DoubleOptions {
    fn default() -> Self {
        Self {
            multi_stream_append: true,
            address: None,
            follower_of: None,
        }
    }
}

/// A running protocol test double on a loopback port. Dropping it stops the server.
pub struct ProtocolTestDouble {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    /// Ends live subscriptions, which would otherwise hold a graceful shutdown open forever.
    closing: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ProtocolTestDouble {
    /// Serves `log` on `127.0.0.1` at a free port, like KurrentDB 25.1 (with the v2
    /// multi-stream append).
    pub async fn start(log: Arc<dyn EventLog>) -> Result<Self, EventLogError> {
        Self::start_with(log, DoubleOptions::default()).await
    }

    /// Serves `log` as `options` say.
    pub async fn start_with(
        log: Arc<dyn EventLog>,
        options: DoubleOptions,
    ) -> Result<Self, EventLogError> {
        let address = options.address.unwrap_or(([127, 0, 0, 1], 0).into());
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|e| EventLogError::Unavailable(format!("test double cannot bind: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| EventLogError::Unavailable(format!("test double address: {e}")))?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let (closing, closing_rx) = watch::channel(false);
        let service = Double {
            log,
            closing: closing_rx,
            follower_of: options.follower_of,
        };
        // An older server simply lacks the v2 service: the client then gets `Unimplemented`.
        let v2 = options
            .multi_stream_append
            .then(|| StreamsServiceServer::new(service.clone()));
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(StreamsServer::new(service))
                .add_optional_service(v2)
                .serve_with_incoming_shutdown(
                    // Without TCP_NODELAY every small response waits out delayed ACKs (~40 ms).
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "protocol test double stopped");
            }
        });
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            closing,
            task: Some(task),
        })
    }

    /// The address it listens on (to restart a double at the same place).
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// The connection string the official client uses to reach this double.
    pub fn url(&self) -> String {
        format!("kurrentdb://{}?tls=false", self.addr)
    }

    /// Stops serving and waits until the server has let go of its connections.
    pub async fn stop(mut self) {
        self.halt();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn halt(&mut self) {
        let _ = self.closing.send(true);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl Drop for ProtocolTestDouble {
    fn drop(&mut self) {
        self.halt();
    }
}

#[derive(Clone)]
struct Double {
    log: Arc<dyn EventLog>,
    closing: watch::Receiver<bool>,
    follower_of: Option<SocketAddr>,
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<v1::ReadResp, Status>> + Send>>;
type BatchStream = Pin<Box<dyn Stream<Item = Result<v1::BatchAppendResp, Status>> + Send>>;

fn status(e: EventLogError) -> Status {
    match e {
        EventLogError::InvalidAppend(_) | EventLogError::DuplicateEventId { .. } => {
            Status::invalid_argument(e.to_string())
        }
        other => Status::unavailable(other.to_string()),
    }
}

#[tonic::async_trait]
impl Streams for Double {
    type ReadStream = ReadStream;
    type BatchAppendStream = BatchStream;

    async fn read(&self, request: Request<v1::ReadReq>) -> Result<Response<ReadStream>, Status> {
        let options = request
            .into_inner()
            .options
            .ok_or_else(|| Status::invalid_argument("read without options"))?;
        let structured_ids = convert::wants_structured_ids(&options);
        let backwards =
            options.read_direction == v1::read_req::options::ReadDirection::Backwards as i32;
        let filter = Filter::from_proto(options.filter_option.as_ref())?;
        let (tx, rx) = mpsc::channel(256);
        let log = self.log.clone();
        match (options.stream_option, options.count_option) {
            (
                Some(v1::read_req::options::StreamOption::Stream(stream)),
                Some(v1::read_req::options::CountOption::Count(count)),
            ) => {
                let messages =
                    read_stream(&*log, stream, backwards, count, structured_ids).await?;
                tokio::spawn(async move {
                    for m in messages {
                        if tx.send(Ok(m)).await.is_err() {
                            return;
                        }
                    }
                });
            }
            (
                Some(v1::read_req::options::StreamOption::All(all)),
                Some(v1::read_req::options::CountOption::Count(count)),
            ) => {
                if backwards {
                    let messages = read_all_backwards(&*log, all, count, &filter, structured_ids).await?;
                    tokio::spawn(async move {
                        for m in messages {
                            if tx.send(Ok(m)).await.is_err() {
                                return;
                            }
                        }
                    });
                } else {
                    let after = match all.all_option {
                        Some(v1::read_req::options::all_options::AllOption::Position(p)) => {
                            // The read includes `p`; positions are integers.
                            p.commit_position.checked_sub(1).filter(|&q| q > 0).map(Position)
                        }
                        Some(v1::read_req::options::all_options::AllOption::End(_)) => {
                            log.head().await.map_err(status)?
                        }
                        _ => None,
                    };
                    tokio::spawn(read_all_forwards(log, after, count, filter, structured_ids, tx));
                }
            }
            (
                Some(v1::read_req::options::StreamOption::All(all)),
                Some(v1::read_req::options::CountOption::Subscription(_)),
            ) => {
                let after = match all.all_option {
                    Some(v1::read_req::options::all_options::AllOption::Position(p)) => {
                        Some(Position(p.commit_position))
                    }
                    Some(v1::read_req::options::all_options::AllOption::End(_)) => {
                        log.head().await.map_err(status)?
                    }
                    _ => None,
                };
                let interval = convert::checkpoint_interval(options.filter_option.as_ref());
                let subscription = log.subscribe(after, EventFilter::all()).await.map_err(status)?;
                tokio::spawn(serve_subscription(
                    subscription,
                    filter,
                    interval,
                    structured_ids,
                    self.closing.clone(),
                    tx,
                ));
            }
            _ => {
                return Err(Status::unimplemented(
                    "the protocol test double serves stream reads, $all reads and $all subscriptions only",
                ))
            }
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn append(
        &self,
        request: Request<Streaming<v1::AppendReq>>,
    ) -> Result<Response<v1::AppendResp>, Status> {
        let mut incoming = request.into_inner();
        let first = incoming
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("append without options"))?;
        let Some(v1::append_req::Content::Options(options)) = first.content else {
            return Err(Status::invalid_argument(
                "an append starts with its options",
            ));
        };
        let stream = convert::stream_name(options.stream_identifier.as_ref())?;
        let expected = convert::expected_from_v1(options.expected_stream_revision)?;
        let mut events = Vec::new();
        while let Some(message) = incoming.message().await? {
            match message.content {
                Some(v1::append_req::Content::ProposedMessage(m)) => {
                    events.push(convert::new_event_from_v1(m)?)
                }
                _ => return Err(Status::invalid_argument("options sent twice")),
            }
        }
        let result = match self.log.append(&stream, expected, events).await {
            Ok(r) => v1::append_resp::Result::Success(v1::append_resp::Success {
                current_revision_option: Some(
                    v1::append_resp::success::CurrentRevisionOption::CurrentRevision(
                        r.next_revision,
                    ),
                ),
                position_option: Some(v1::append_resp::success::PositionOption::Position(
                    v1::append_resp::Position {
                        commit_position: r.position.0,
                        prepare_position: r.position.0,
                    },
                )),
            }),
            Err(EventLogError::WrongExpectedVersion {
                expected, actual, ..
            }) => v1::append_resp::Result::WrongExpectedVersion(convert::wrong_expected_version(
                expected, actual,
            )),
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(v1::AppendResp {
            result: Some(result),
        }))
    }

    async fn delete(&self, _: Request<v1::DeleteReq>) -> Result<Response<v1::DeleteResp>, Status> {
        Err(Status::unimplemented(
            "not part of the protocol test double",
        ))
    }

    async fn tombstone(
        &self,
        _: Request<v1::TombstoneReq>,
    ) -> Result<Response<v1::TombstoneResp>, Status> {
        Err(Status::unimplemented(
            "not part of the protocol test double",
        ))
    }

    async fn batch_append(
        &self,
        _: Request<Streaming<v1::BatchAppendReq>>,
    ) -> Result<Response<BatchStream>, Status> {
        Err(Status::unimplemented(
            "not part of the protocol test double",
        ))
    }
}

#[tonic::async_trait]
impl StreamsService for Double {
    async fn multi_stream_append(
        &self,
        request: Request<v2::MultiStreamAppendRequest>,
    ) -> Result<Response<v2::MultiStreamAppendResponse>, Status> {
        if let Some(leader) = self.follower_of {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert(
                "exception",
                tonic::metadata::MetadataValue::from_static("not-leader"),
            );
            if let (Ok(host), Ok(port)) = (
                leader.ip().to_string().parse(),
                leader.port().to_string().parse(),
            ) {
                metadata.insert("leader-endpoint-host", host);
                metadata.insert("leader-endpoint-port", port);
            }
            return Err(Status::with_metadata(
                tonic::Code::NotFound,
                "Leader info available",
                metadata,
            ));
        }
        let input = request.into_inner().input;
        if input.is_empty() {
            return Err(Status::invalid_argument(
                "At least one AppendStreamRequest must be present",
            ));
        }
        let writes = input
            .into_iter()
            .map(convert::stream_write_from_v2)
            .collect::<Result<Vec<_>, Status>>()?;
        let names: Vec<String> = writes.iter().map(|w| w.stream.clone()).collect();
        let result = match self.log.append_multi(writes).await {
            Ok(results) => {
                // KurrentDB reports the transaction's position for every stream.
                let position = results.iter().map(|r| r.position.0).min().unwrap_or(0);
                v2::multi_stream_append_response::Result::Success(
                    v2::multi_stream_append_response::Success {
                        output: names
                            .into_iter()
                            .zip(results)
                            .map(|(stream, r)| v2::AppendStreamSuccess {
                                stream,
                                position: i64::try_from(position).ok(),
                                stream_revision: i64::try_from(r.next_revision).unwrap_or(i64::MAX),
                            })
                            .collect(),
                    },
                )
            }
            Err(EventLogError::WrongExpectedVersion { stream, actual, .. }) => {
                v2::multi_stream_append_response::Result::Failure(
                    v2::multi_stream_append_response::Failure {
                        output: vec![v2::AppendStreamFailure {
                            stream,
                            error: Some(v2::append_stream_failure::Error::WrongExpectedRevision(
                                v2::error_details::WrongExpectedRevision {
                                    stream_revision: actual
                                        .and_then(|r| i64::try_from(r).ok())
                                        .unwrap_or(-1),
                                },
                            )),
                        }],
                    },
                )
            }
            Err(e) => return Err(status(e)),
        };
        Ok(Response::new(v2::MultiStreamAppendResponse {
            result: Some(result),
        }))
    }
}

async fn read_stream(
    log: &dyn EventLog,
    options: StreamOptions,
    backwards: bool,
    count: u64,
    structured_ids: bool,
) -> Result<Vec<v1::ReadResp>, Status> {
    use crate::eventlog::{Direction, StreamStart};
    use v1::read_req::options::stream_options::RevisionOption;

    let stream = convert::stream_name(options.stream_identifier.as_ref())?;
    let direction = if backwards {
        Direction::Backwards
    } else {
        Direction::Forwards
    };
    let start = match options.revision_option {
        Some(RevisionOption::Revision(r)) => StreamStart::Revision(r),
        Some(RevisionOption::End(_)) if !backwards => {
            // Forwards from the end: nothing yet.
            return Ok(Vec::new());
        }
        _ => StreamStart::Origin,
    };
    let max = usize::try_from(count).unwrap_or(usize::MAX);
    let events = log
        .read_stream(&stream, direction, start, max)
        .await
        .map_err(status)?;
    if events.is_empty()
        && log
            .stream_revision(&stream)
            .await
            .map_err(status)?
            .is_none()
    {
        return Ok(vec![convert::stream_not_found(&stream)]);
    }
    Ok(events
        .into_iter()
        .map(|e| WireEvent(e).into_read_resp(structured_ids))
        .collect())
}

/// A backwards read of `$all` from the end or from a position (exclusive), through the
/// backing log's own backwards read; `filter` applied as the server would.
async fn read_all_backwards(
    log: &dyn EventLog,
    all: AllOptions,
    count: u64,
    filter: &Filter,
    structured_ids: bool,
) -> Result<Vec<v1::ReadResp>, Status> {
    let mut before = match all.all_option {
        Some(v1::read_req::options::all_options::AllOption::End(_)) => None,
        Some(v1::read_req::options::all_options::AllOption::Position(p)) => {
            Some(Position(p.commit_position))
        }
        _ => {
            return Err(Status::invalid_argument(
                "a backwards read of $all starts at the end or at a position",
            ))
        }
    };
    let mut out = Vec::new();
    while (out.len() as u64) < count {
        let page = log
            .read_all_backwards(before, &EventFilter::all(), PAGE)
            .await
            .map_err(status)?;
        let done = page.len() < PAGE;
        for e in page {
            before = Some(e.position);
            if filter.matches(&e.stream, &e.event_type) && (out.len() as u64) < count {
                out.push(WireEvent(e).into_read_resp(structured_ids));
            }
        }
        if done {
            break;
        }
    }
    Ok(out)
}

async fn read_all_forwards(
    log: Arc<dyn EventLog>,
    mut after: Option<Position>,
    count: u64,
    filter: Filter,
    structured_ids: bool,
    tx: mpsc::Sender<Result<v1::ReadResp, Status>>,
) {
    let mut sent = 0u64;
    while sent < count {
        let page = match log.read_all(after, &EventFilter::all(), PAGE).await {
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(status(e))).await;
                return;
            }
        };
        let done = page.len() < PAGE;
        for event in page {
            after = Some(event.position);
            if sent < count && filter.matches(&event.stream, &event.event_type) {
                sent += 1;
                if tx
                    .send(Ok(WireEvent(event).into_read_resp(structured_ids)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if done {
            return;
        }
    }
}

async fn serve_subscription(
    mut subscription: crate::eventlog::Subscription,
    filter: Filter,
    checkpoint_interval: u64,
    structured_ids: bool,
    mut closing: watch::Receiver<bool>,
    tx: mpsc::Sender<Result<v1::ReadResp, Status>>,
) {
    let confirmation = v1::ReadResp {
        content: Some(v1::read_resp::Content::Confirmation(
            v1::read_resp::SubscriptionConfirmation {
                subscription_id: uuid::Uuid::new_v4().to_string(),
            },
        )),
    };
    if tx.send(Ok(confirmation)).await.is_err() {
        return;
    }
    let mut considered = 0u64;
    let mut last = None;
    loop {
        let message = tokio::select! {
            m = subscription.next() => m,
            () = tx.closed() => return,
            // Like a server going down: the client sees the stream fail and resubscribes.
            () = async { let _ = closing.wait_for(|closing| *closing).await; } => {
                let _ = tx.send(Err(Status::unavailable("server shutting down"))).await;
                return;
            }
        };
        let mut replies = Vec::with_capacity(2);
        match message {
            None => return,
            Some(Err(e)) => {
                let _ = tx.send(Err(status(e))).await;
                return;
            }
            Some(Ok(SubscriptionMessage::CaughtUp)) => replies.push(convert::caught_up(last)),
            // The backing subscription is unfiltered: it has nothing to skip.
            Some(Ok(SubscriptionMessage::Checkpoint(_))) => {}
            Some(Ok(SubscriptionMessage::Event(event))) => {
                considered += 1;
                last = Some(event.position);
                let position = event.position;
                if filter.matches(&event.stream, &event.event_type) {
                    replies.push(WireEvent(event).into_read_resp(structured_ids));
                }
                // Like KurrentDB: a filtered subscription reports how far it has looked
                // every `interval` events it considered, matching or not.
                if filter.is_some() && considered.is_multiple_of(checkpoint_interval) {
                    replies.push(convert::checkpoint(position));
                }
            }
        }
        for reply in replies {
            if tx.send(Ok(reply)).await.is_err() {
                return;
            }
        }
    }
}
