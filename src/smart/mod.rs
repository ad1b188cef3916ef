//! The SMART App Launch 2.2.0 authorization server: discovery, registration, login and
//! consent, tokens, revocation, introspection, backend services.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::Filter;

use crate::app::App;

/// Every authorization-server route.
pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let _ = app;
    warp::any()
        .and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
        .boxed()
}
