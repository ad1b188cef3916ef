//! `/health` (liveness) and `/health/ready` (the log answers and every projection is live).

use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use crate::projection::RunnerState;

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let live = warp::path!("health")
        .and(warp::get().or(warp::head()).unify())
        .map(|| health_reply(StatusCode::OK, json!({"status": "pass"})));
    let ready = warp::path!("health" / "ready")
        .and(warp::get().or(warp::head()).unify())
        .and(warp::any().map(move || app.clone()))
        .then(readiness);
    live.or(ready).unify()
}

async fn readiness(app: Arc<App>) -> warp::reply::Response {
    let head = app.log.head().await;
    let mut ready = head.is_ok();
    let projections: Vec<_> = app
        .projections()
        .map(|p| {
            let state = p.state();
            ready &= state == RunnerState::Live;
            json!({
                "name": p.name(),
                "state": match &state {
                    RunnerState::CatchingUp => "catching-up",
                    RunnerState::Live => "live",
                    RunnerState::Failed(_) => "failed",
                },
                "applied": p.applied().map(|p| p.0),
                // The stored checkpoint this run started from (`null`: replayed the log).
                "resumed_from": p.resumed_from().map(|p| p.0),
            })
        })
        .collect();
    let body = json!({
        "status": if ready { "pass" } else { "fail" },
        "log": match &head {
            Ok(head) => json!({"reachable": true, "head": head.map(|p| p.0)}),
            // The error text may name paths, never PHI or secrets.
            Err(e) => json!({"reachable": false, "error": e.to_string()}),
        },
        "projections": projections,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    health_reply(status, body)
}

fn health_reply(status: StatusCode, body: serde_json::Value) -> warp::reply::Response {
    use warp::Reply;
    let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/health+json"),
    );
    response.headers_mut().insert(
        warp::http::header::CACHE_CONTROL,
        warp::http::HeaderValue::from_static("no-store"),
    );
    response
}
