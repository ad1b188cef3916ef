//! The accept loop: warp has no TLS of its own since 0.4, so connections are accepted here,
//! wrapped in rustls, and served by hyper's auto (HTTP/1.1 + HTTP/2) connection builder with
//! the warp filter as the service. The peer address travels as a request extension
//! ([`PeerAddr`]) because warp's `remote()` is empty on this path.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use warp::filters::BoxedFilter;

use crate::audit::Auditor;

/// The address of the client that opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A TLS handshake that has not finished by then is dropped (slow-loris protection).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `routes` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish for at most `grace`. With an `auditor`, every request that touches data or
/// credentials is recorded, durably, before its response is sent (see [`crate::audit`]).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    routes: BoxedFilter<(warp::reply::Response,)>,
    auditor: Option<Arc<Auditor>>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let routes = routes.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        let auditor = auditor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, routes, auditor, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => serve_connection(tcp, peer, routes, auditor, watcher).await,
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(?grace, "in-flight requests did not finish in time");
    }
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    routes: BoxedFilter<(warp::reply::Response,)>,
    auditor: Option<Arc<Auditor>>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let warp_service = warp::service(routes);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(PeerAddr(peer));
        let mut warp_service = warp_service.clone();
        let auditor = auditor.clone();
        async move {
            let Some(auditor) = auditor else {
                return tower_service::Service::call(&mut warp_service, request).await;
            };
            let method = request.method().as_str().to_owned();
            let path = request.uri().path().to_owned();
            let (response, note): (Result<warp::reply::Response, Infallible>, _) =
                crate::audit::scope(tower_service::Service::call(&mut warp_service, request)).await;
            let Ok(response) = response;
            let record = note.into_record(
                &method,
                &path,
                Some(peer.ip().to_string()),
                response.status().as_u16(),
                crate::fhir::store::now_ms(),
            );
            if let Some(record) = record {
                // The response waits for its access to be durable: never answered unrecorded.
                if let Err(e) = auditor.record(&record).await {
                    tracing::error!(error = %e, "an access could not be recorded; answering 503");
                    return Ok(unrecorded());
                }
            }
            Ok(response)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// What a client gets instead of data whose access could not be recorded.
fn unrecorded() -> warp::reply::Response {
    let body = serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "transient", "diagnostics": "the access could not be recorded; retry shortly"}],
    });
    let mut response = warp::reply::Response::new(body.to_string().into());
    *response.status_mut() = warp::http::StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/fhir+json"),
    );
    response.headers_mut().insert(
        warp::http::header::RETRY_AFTER,
        warp::http::HeaderValue::from_static("1"),
    );
    response
}
