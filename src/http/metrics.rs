//! `GET /metrics`: Prometheus text format.

use std::fmt::Write as _;
use std::sync::Arc;

use warp::http::HeaderValue;
use warp::{Filter, Reply};

use crate::app::App;
use crate::ops::metrics::metrics;
use crate::projection::RunnerState;

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(warp::any().map(move || app.clone()))
        .then(render)
}

async fn render(app: Arc<App>) -> warp::reply::Response {
    let head = app
        .log
        .head()
        .await
        .ok()
        .flatten()
        .map(|p| p.0)
        .unwrap_or(0);
    let mut extra = String::new();
    let _ = writeln!(
        extra,
        "# HELP sphere_eventlog_head_position Position of the newest committed event.\n# TYPE sphere_eventlog_head_position gauge\nsphere_eventlog_head_position {head}"
    );
    extra.push_str("# HELP sphere_projection_applied_position Position each projection has applied and committed.\n# TYPE sphere_projection_applied_position gauge\n");
    for p in app.projections() {
        let applied = p.applied().map(|p| p.0).unwrap_or(0);
        let _ = writeln!(
            extra,
            "sphere_projection_applied_position{{projection=\"{}\"}} {applied}",
            p.name()
        );
    }
    extra.push_str("# HELP sphere_projection_lag_positions Head position minus applied position (subscription lag).\n# TYPE sphere_projection_lag_positions gauge\n");
    for p in app.projections() {
        let applied = p.applied().map(|p| p.0).unwrap_or(0);
        let _ = writeln!(
            extra,
            "sphere_projection_lag_positions{{projection=\"{}\"}} {}",
            p.name(),
            head.saturating_sub(applied)
        );
    }
    extra.push_str("# HELP sphere_projection_live 1 when the projection has caught up and follows live events.\n# TYPE sphere_projection_live gauge\n");
    for p in app.projections() {
        let live = u8::from(p.state() == RunnerState::Live);
        let _ = writeln!(
            extra,
            "sphere_projection_live{{projection=\"{}\"}} {live}",
            p.name()
        );
    }
    let mut response = metrics().render(&extra).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
