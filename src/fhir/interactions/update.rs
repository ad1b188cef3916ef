//! update (`PUT [type]/[id]`, update-as-create allowed) and conditional update
//! (`PUT [type]?search`).
//!
//! With `If-Match: W/"n"` the append expects revision n-1: if anyone else wrote in between, the
//! log refuses and the client gets 412, so two concurrent updates can never both win. Without
//! it the current revision is read and expected; a lost race is retried a few times, then 409.

use serde_json::{Map, Value};
use sphere_domain::fhir_rest::parse_etag;
use sphere_domain::resource::is_valid_id;
use warp::http::StatusCode;

use super::super::access::{AccessContext, Interaction};
use super::super::conditional;
use super::super::format::{Body, FhirResponse};
use super::super::outcome::outcome;
use super::super::outcome::FhirError;
use super::super::request::{FhirRequest, Return};
use super::super::store::{self, PreparedWrite};
use super::{
    await_projections, check_replaceable, check_valid, parse_resource, pinned_write, write_response,
};
use crate::app::App;
use crate::eventlog::{EventLogError, ExpectedRevision};

/// Attempts at an unconditional update that keeps losing races before answering 409.
const RETRIES: usize = 3;

pub async fn update(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    request: FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Update, Some(resource_type), None)?;
    if !is_valid_id(id) {
        return Err(FhirError::BadRequest(
            "the id in the URL is not a valid FHIR id ([A-Za-z0-9-.]{1,64})".into(),
        ));
    }
    let resource = parse_resource(&request.payload, resource_type)?;
    match resource.get("id") {
        Some(Value::String(body_id)) if body_id == id => {}
        Some(_) => {
            return Err(FhirError::BadRequest(
                "the id in the body does not match the id in the URL".into(),
            ))
        }
        None => {
            return Err(FhirError::BadRequest(
                "an update must carry the resource id in the body".into(),
            ))
        }
    }
    put(app, ctx, resource_type, id, resource, &request).await
}

pub async fn conditional_update(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    request: FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Update, Some(resource_type), None)?;
    let resource = parse_resource(&request.payload, resource_type)?;
    let ids = conditional::matching_ids(app, ctx, resource_type, &request.search_query()).await?;
    let id = match ids.as_slice() {
        [] => match resource.get("id").and_then(Value::as_str) {
            Some(id) if is_valid_id(id) => id.to_owned(),
            Some(_) => {
                return Err(FhirError::BadRequest(
                    "the body's id is not a valid FHIR id".into(),
                ))
            }
            None => store::new_id(),
        },
        [one] => {
            if let Some(body_id) = resource.get("id").and_then(Value::as_str) {
                if body_id != one {
                    return Err(FhirError::BadRequest(
                        "the body's id differs from the resource the search matched".into(),
                    ));
                }
            }
            one.clone()
        }
        _ => {
            return Err(FhirError::PreconditionFailed(format!(
                "the conditional update matches {} {resource_type} resources",
                ids.len()
            )))
        }
    };
    put(app, ctx, resource_type, &id, resource, &request).await
}

async fn put(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    resource: Map<String, Value>,
    request: &FhirRequest,
) -> Result<FhirResponse, FhirError> {
    let value = Value::Object(resource);
    ctx.check(Interaction::Update, Some(resource_type), Some(&value))?;
    let checked = check_replaceable(app, ctx, resource_type, id).await?;
    let Value::Object(resource) = value else {
        unreachable!("built from an object just above")
    };
    let if_match = match &request.conditions.if_match {
        Some(tag) => Some(parse_etag(tag).ok_or_else(|| {
            FhirError::BadRequest("If-Match must be a version ETag like W/\"3\"".into())
        })?),
        None => None,
    };
    write(
        app,
        ctx,
        resource_type,
        id,
        resource,
        Pin { if_match, checked },
        request.prefer,
    )
    .await
}

/// What an update must replace: the client's `If-Match` version, and the revision the access
/// check saw when the grant depends on content.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pin {
    pub if_match: Option<u64>,
    pub checked: Option<ExpectedRevision>,
}

/// Writes `resource` as the next version of `resource_type/id` (already access-checked), after
/// `if_match` when given: 412 if anyone else wrote since. Unchanged content writes nothing.
pub(super) async fn write(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    resource: Map<String, Value>,
    pin: Pin,
    prefer: Option<Return>,
) -> Result<FhirResponse, FhirError> {
    let Pin { if_match, checked } = pin;
    // Wrapped for the validator and unwrapped again: moves, no copy.
    let resource = Value::Object(resource);
    check_valid(&resource)?;
    let Value::Object(resource) = resource else {
        unreachable!("built from an object just above")
    };
    if let Some(current) = store::unchanged(app.log.as_ref(), resource_type, id, &resource)
        .await?
        .filter(|current| if_match.is_none_or(|v| v == current.version()))
    {
        // Nothing changes: no new version, no event; answer with the current one, shaped
        // by `Prefer` as a write's answer is.
        let body = match prefer.unwrap_or(Return::Representation) {
            Return::Minimal => Body::None,
            Return::Representation => Body::Raw(current.body.clone()),
            Return::OperationOutcome => Body::Json(outcome(
                "information",
                "informational",
                &format!(
                    "{resource_type}/{id} version {} unchanged: the content is the same",
                    current.version()
                ),
                None,
            )),
        };
        let mut response = FhirResponse::new(StatusCode::OK, body);
        response.version = Some(current.version());
        response.last_modified_ms = Some(current.last_updated_ms);
        response.location = Some(current.versioned_reference());
        return Ok(response);
    }
    let correlation = uuid::Uuid::now_v7();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pinned = pinned_write(if_match, checked, &format!("{resource_type}/{id}"))?;
        let (version, expected) = match pinned {
            Some(pinned) => pinned,
            None => match app
                .log
                .stream_revision(&sphere_domain::resource::stream_name(resource_type, id))
                .await?
            {
                Some(rev) => (rev + 2, ExpectedRevision::Exact(rev)),
                None => (1, ExpectedRevision::NoStream),
            },
        };
        let now = store::now_ms();
        let metadata = store::event_metadata(ctx, correlation, now);
        let prepared: PreparedWrite = store::prepare_put(
            &resource,
            resource_type,
            id,
            version,
            expected,
            now,
            metadata,
        )?;
        let w = &prepared.write;
        match app
            .log
            .append(&w.stream, w.expected, w.events.clone())
            .await
        {
            Ok(result) => {
                await_projections(app, result.position).await?;
                let status = if prepared.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                return Ok(write_response(&prepared, status, prefer));
            }
            Err(EventLogError::WrongExpectedVersion { actual, .. }) => {
                if if_match.is_some() {
                    return Err(FhirError::PreconditionFailed(format!(
                        "If-Match names version {} but {resource_type}/{id} is at {}",
                        if_match.unwrap_or(0),
                        actual
                            .map(|r| (r + 1).to_string())
                            .unwrap_or_else(|| "no version".into())
                    )));
                }
                if checked.is_some() {
                    // The version the access check saw is gone: check the new one first.
                    return Err(FhirError::Conflict(format!(
                        "{resource_type}/{id} changed while being updated; retry"
                    )));
                }
                if attempt >= RETRIES {
                    return Err(FhirError::Conflict(format!(
                        "{resource_type}/{id} is being changed concurrently; retry"
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
