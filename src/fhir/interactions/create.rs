//! create (`POST [type]`): a server-assigned id, version 1, appended with "no stream" so the id
//! can never be taken twice. Conditional create (`If-None-Exist`) answers 200 with the match
//! instead of writing when exactly one resource matches, and 412 when several do.

use warp::http::StatusCode;

use super::super::access::{AccessContext, Interaction};
use super::super::conditional;
use super::super::format::{Body, FhirResponse};
use super::super::outcome::FhirError;
use super::super::request::FhirRequest;
use super::super::store;
use super::{await_projections, check_valid, parse_resource, write_response};
use crate::app::App;
use crate::eventlog::ExpectedRevision;

pub async fn create(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    request: FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Create, Some(resource_type), None)?;
    let resource = parse_resource(&request.payload, resource_type)?;
    if let Some(criteria) = &request.conditions.if_none_exist {
        let ids = conditional::matching_ids(app, ctx, resource_type, criteria).await?;
        match ids.as_slice() {
            [] => {}
            [id] => {
                let existing = store::current(app.log.as_ref(), resource_type, id)
                    .await?
                    .ok_or_else(|| FhirError::Internal("a match vanished".into()))?;
                return Ok(FhirResponse {
                    status: StatusCode::OK,
                    body: Body::Raw(existing.body.clone()),
                    version: Some(existing.version()),
                    last_modified_ms: Some(existing.last_updated_ms),
                    location: Some(existing.versioned_reference()),
                });
            }
            _ => {
                return Err(FhirError::PreconditionFailed(format!(
                    "If-None-Exist matches {} {resource_type} resources",
                    ids.len()
                )))
            }
        }
    }
    let value = serde_json::Value::Object(resource);
    ctx.check(Interaction::Create, Some(resource_type), Some(&value))?;
    check_valid(&value)?;
    let serde_json::Value::Object(resource) = value else {
        unreachable!("built from an object just above")
    };
    let now = store::now_ms();
    let id = store::new_id();
    let metadata = store::event_metadata(ctx, uuid::Uuid::now_v7(), now);
    let prepared = store::prepare_put(
        &resource,
        resource_type,
        &id,
        1,
        ExpectedRevision::NoStream,
        now,
        metadata,
    )?;
    let w = &prepared.write;
    let result = app
        .log
        .append(&w.stream, w.expected, w.events.clone())
        .await?;
    await_projections(app, result.position).await?;
    Ok(write_response(
        &prepared,
        StatusCode::CREATED,
        request.prefer,
    ))
}
