//! The FHIR R4 REST API under `/fhir/r4` (and `/metadata` at the root).
//!
//! One module per group of interactions, as Blaze does it: `interactions` (read, vread,
//! create, update, delete, history, transaction/batch, capabilities, $validate) and `search`
//! (search-type, search-system, compartment search, `$everything`). Both share the error
//! replies and access context defined here.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::Filter;

use crate::app::App;

/// Every FHIR route. Each submodule returns its own filter; this is the only place they meet.
pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let _ = app;
    warp::any()
        .and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
        .boxed()
}
