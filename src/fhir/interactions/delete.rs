//! delete (`DELETE [type]/[id]`) and conditional delete (`DELETE [type]?search`, single match).
//! A deletion is a version of its own (a ResourceDeleted event); reading it afterwards is 410.
//! Deleting what is already deleted writes nothing and answers 204.

use warp::http::StatusCode;

use super::super::access::{AccessContext, Interaction};
use super::super::conditional;
use super::super::format::{Body, FhirResponse};
use super::super::outcome::FhirError;
use super::super::request::FhirRequest;
use super::super::store;
use super::await_projections;
use super::read::not_found;
use crate::app::App;

pub async fn delete(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Delete, Some(resource_type), None)?;
    let current = if sphere_domain::resource::is_valid_id(id) {
        store::current(app.log.as_ref(), resource_type, id).await?
    } else {
        None
    };
    let Some(current) = current else {
        return Err(not_found(resource_type, id));
    };
    if current.deleted {
        let mut r = FhirResponse::new(StatusCode::NO_CONTENT, Body::None);
        r.version = Some(current.version());
        return Ok(r);
    }
    if !ctx.is_operator() {
        let resource = serde_json::from_slice(&current.body)
            .map_err(|_| FhirError::Internal("a stored resource is not JSON".into()))?;
        ctx.check(Interaction::Delete, Some(resource_type), Some(&resource))?;
    }
    let now = store::now_ms();
    let metadata = store::event_metadata(ctx, uuid::Uuid::now_v7(), now);
    let prepared = store::prepare_delete(&current, now, metadata)?;
    let w = &prepared.write;
    let result = app
        .log
        .append(&w.stream, w.expected, w.events.clone())
        .await?;
    await_projections(app, result.position).await?;
    let mut r = FhirResponse::new(StatusCode::NO_CONTENT, Body::None);
    r.version = Some(prepared.version);
    r.last_modified_ms = Some(now);
    Ok(r)
}

pub async fn conditional_delete(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    request: &FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Delete, Some(resource_type), None)?;
    let ids = conditional::matching_ids(app, ctx, resource_type, &request.search_query()).await?;
    match ids.as_slice() {
        [] => Ok(FhirResponse::new(StatusCode::NO_CONTENT, Body::None)),
        [id] => delete(app, ctx, resource_type, id).await,
        _ => Err(FhirError::PreconditionFailed(format!(
            "the conditional delete matches {} {resource_type} resources; this server deletes one at a time",
            ids.len()
        ))),
    }
}
