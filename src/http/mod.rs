//! The HTTP surface: routes, the TLS accept loop, and the error replies shared by all routes.

pub mod health;
pub mod metrics;
pub mod server;
pub mod service_base;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::app::App;

/// Every route of the server, with security headers, access logging and error replies.
pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let started = warp::any().map(Instant::now);
    let method_path = warp::method().and(warp::path::full());
    started
        .and(method_path)
        .and(
            // Bulk first: before the FHIR routes so `$export` and the status and file URLs
            // match first, and before any route that reads the body and then rejects.
            crate::bulk::routes(app.clone())
                .or(health::routes(app.clone()))
                .unify()
                .or(metrics::routes(app.clone()))
                .unify()
                .or(service_base::routes(app.clone()))
                .unify()
                .or(crate::audit::page::routes(app.clone()))
                .unify()
                .or(crate::smart::routes(app.clone()))
                .unify()
                .or(crate::fhir::routes(app))
                .unify()
                .recover(recover)
                .unify(),
        )
        .map(
            |started: Instant,
             method: warp::http::Method,
             path: warp::path::FullPath,
             mut response: warp::reply::Response| {
                secure(&mut response);
                crate::ops::metrics::metrics().observe_request(
                    path.as_str(),
                    method.as_str(),
                    response.status().as_u16(),
                    started.elapsed(),
                );
                // The path only: queries can hold PHI (name=, birthdate=) and must not be logged.
                tracing::info!(
                    target: "sphere::access",
                    %method,
                    path = path.as_str(),
                    status = response.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                );
                response
            },
        )
        .boxed()
}

fn secure(response: &mut warp::reply::Response) {
    let headers = response.headers_mut();
    headers.insert(
        "strict-transport-security",
        HeaderValue::from_static("max-age=31536000"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

/// A JSON error body for what no route handled. FHIR routes answer with their own
/// OperationOutcome; this is the fallback for the rest.
async fn recover(
    rejection: warp::Rejection,
) -> Result<warp::reply::Response, std::convert::Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "no such endpoint")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this endpoint",
        )
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    } else {
        (StatusCode::BAD_REQUEST, "bad request")
    };
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": if status == StatusCode::NOT_FOUND { "not-found" } else { "invalid" }, "diagnostics": message}],
    });
    let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json"),
    );
    Ok(response)
}
