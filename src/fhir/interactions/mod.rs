//! The FHIR interactions other than search, one module each (as Blaze arranges them): read and
//! vread, create, update, delete, history, transaction/batch, capabilities and `$validate`.
//!
//! [`dispatch`] is the single entry point, used both for HTTP requests and for the entries of a
//! batch Bundle, so an entry behaves exactly like the same request sent alone.

pub mod bundle;
pub mod capabilities;
pub mod create;
pub mod delete;
pub mod history;
pub mod patch;
pub mod read;
pub mod update;
pub mod validate;

#[cfg(test)]
mod proptests;

use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};
use sphere_domain::fhir::{has_errors, validate as validate_resource};
use warp::http::StatusCode;

use super::access::{AccessContext, Interaction};
use super::format::{Body, FhirResponse};
use super::outcome::{outcome, FhirError};
use super::request::{FhirRequest, Payload, Return, Route};
use super::store::{self, PreparedWrite};
use crate::app::App;
use crate::eventlog::{ExpectedRevision, Position};

/// Answers one request (never a search: those are routed to the search module).
pub fn dispatch<'a>(
    app: &'a App,
    ctx: &'a AccessContext,
    request: FhirRequest,
) -> Pin<Box<dyn Future<Output = Result<FhirResponse, FhirError>> + Send + 'a>> {
    Box::pin(async move {
        if targets_audit_event(&request.route) {
            // Only `/fhir/r4/AuditEvent` serves the access history; a Bundle entry must not
            // write (or read a stale copy of) it through the resource store.
            return Err(FhirError::MethodNotAllowed(
                "AuditEvent is read-only and served at AuditEvent (read and search) only".into(),
            ));
        }
        match request.route.clone() {
            Route::Capabilities => capabilities::capabilities(app, ctx),
            Route::Bundle => bundle::bundle(app, ctx, request).await,
            Route::HistorySystem => history::history(app, ctx, &request, None, None).await,
            Route::HistoryType(t) => history::history(app, ctx, &request, Some(&t), None).await,
            Route::HistoryInstance(t, id) => {
                history::history(app, ctx, &request, Some(&t), Some(&id)).await
            }
            Route::Create(t) => create::create(app, ctx, &t, request).await,
            Route::ConditionalUpdate(t) => update::conditional_update(app, ctx, &t, request).await,
            Route::ConditionalDelete(t) => delete::conditional_delete(app, ctx, &t, &request).await,
            Route::Read(t, id) => read::read(app, ctx, &t, &id, &request).await,
            Route::VRead(t, id, v) => read::vread(app, ctx, &t, &id, &v, &request).await,
            Route::Update(t, id) => update::update(app, ctx, &t, &id, request).await,
            Route::Delete(t, id) => delete::delete(app, ctx, &t, &id).await,
            Route::Patch(t, id) => patch::patch(app, ctx, &t, &id, request).await,
            Route::Validate(t, id) => validate::validate(ctx, &t, id.as_deref(), &request),
            Route::UnknownType(t) => Err(unknown_type(&t)),
            Route::MethodNotAllowed(why) => Err(FhirError::MethodNotAllowed(why.into())),
        }
    })
}

fn targets_audit_event(route: &Route) -> bool {
    match route {
        Route::HistoryType(t)
        | Route::HistoryInstance(t, _)
        | Route::Create(t)
        | Route::ConditionalUpdate(t)
        | Route::ConditionalDelete(t)
        | Route::Read(t, _)
        | Route::VRead(t, _, _)
        | Route::Update(t, _)
        | Route::Delete(t, _)
        | Route::Patch(t, _)
        | Route::Validate(t, _) => t == "AuditEvent",
        _ => false,
    }
}

pub fn unknown_type(resource_type: &str) -> FhirError {
    // The type name comes from the URL, not from PHI; cap it so a long path is not echoed.
    let shown: String = resource_type.chars().take(64).collect();
    FhirError::NotFound(format!(
        "resource type {shown:?} is not supported by this server"
    ))
}

/// The request body as a resource object of `resource_type`: well-formed JSON, an object, the
/// right `resourceType`. Not yet validated.
pub fn parse_resource(
    payload: &Payload,
    resource_type: &str,
) -> Result<Map<String, Value>, FhirError> {
    let value = match payload {
        Payload::None => return Err(FhirError::BadRequest("a resource body is required".into())),
        Payload::Bytes(b) => parse_json(b)?,
        Payload::Json(v) => v.clone(),
    };
    let Value::Object(map) = value else {
        return Err(FhirError::BadRequest(
            "the body must be a JSON object (a FHIR resource)".into(),
        ));
    };
    match map.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == resource_type => Ok(map),
        Some(t) => Err(FhirError::BadRequest(format!(
            "the body is a {} but the URL names {resource_type}",
            t.chars().take(64).collect::<String>()
        ))),
        None => Err(FhirError::BadRequest("the body has no resourceType".into())),
    }
}

/// Parses JSON bytes; the error names the line and column, never the content.
pub fn parse_json(bytes: &[u8]) -> Result<Value, FhirError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(FhirError::BadRequest("the request body is empty".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        FhirError::BadRequest(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Validates a resource (an object) about to be written; errors refuse the write.
pub fn check_valid(resource: &Value) -> Result<(), FhirError> {
    let issues = validate_resource(resource);
    if has_errors(&issues) {
        Err(FhirError::Invalid(issues))
    } else {
        Ok(())
    }
}

/// An update replaces what is there: a grant that depends on content (a patient compartment,
/// granular categories) must reach the current version as well as the new one, or a client
/// could overwrite (and so take over or destroy) a resource it may not touch. A deleted or
/// absent resource holds nothing to protect.
///
/// Returns the revision the check saw (`None` when the grant does not depend on content): the
/// write must replace exactly that one, so that a version written meanwhile (say, moved to
/// another patient) is never replaced unchecked.
pub async fn check_replaceable(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
) -> Result<Option<ExpectedRevision>, FhirError> {
    if !ctx.checks_each_resource(Interaction::Update, resource_type) {
        return Ok(None);
    }
    let Some(current) = store::current(app.log.as_ref(), resource_type, id).await? else {
        return Ok(Some(ExpectedRevision::NoStream));
    };
    if !current.deleted {
        ctx.check_stored(Interaction::Update, resource_type, &current.body)?;
    }
    Ok(Some(ExpectedRevision::Exact(current.revision)))
}

/// The version to write and the revision it replaces: the client's `If-Match` version, else
/// the revision the access check saw, else (`None`) whatever is current at the write.
pub fn pinned_write(
    if_match: Option<u64>,
    checked: Option<ExpectedRevision>,
    at: &str,
) -> Result<Option<(u64, ExpectedRevision)>, FhirError> {
    match (if_match, checked) {
        (Some(0), _) => Err(FhirError::PreconditionFailed(format!(
            "{at}: If-Match names version 0, which never exists"
        ))),
        (Some(v), Some(ExpectedRevision::Exact(seen))) if seen + 1 != v => {
            Err(FhirError::PreconditionFailed(format!(
                "{at}: If-Match names version {v} but the current version is {}",
                seen + 1
            )))
        }
        (Some(_), Some(ExpectedRevision::NoStream)) => Err(FhirError::PreconditionFailed(format!(
            "{at}: If-Match names a version of a resource that does not exist"
        ))),
        (Some(v), _) => Ok(Some((v + 1, ExpectedRevision::Exact(v - 1)))),
        (None, Some(ExpectedRevision::Exact(seen))) => {
            Ok(Some((seen + 2, ExpectedRevision::Exact(seen))))
        }
        (None, Some(ExpectedRevision::NoStream)) => Ok(Some((1, ExpectedRevision::NoStream))),
        (None, _) => Ok(None),
    }
}

/// Waits (bounded) until every projection has applied `position`, so a search right after a
/// write sees it. Past the bound: 503, although the write itself is committed.
pub async fn await_projections(app: &App, position: Position) -> Result<(), FhirError> {
    app.wait_for_projections(position).await.map_err(|e| {
        tracing::warn!(error = %e, "projections did not catch up with a write in time");
        FhirError::Unavailable(
            "the write was committed but the search index has not caught up yet; retry the search shortly".into(),
        )
    })
}

/// The response to a committed write, shaped by `Prefer: return=`.
pub fn write_response(
    written: &PreparedWrite,
    status: StatusCode,
    prefer: Option<Return>,
) -> FhirResponse {
    let body = match prefer.unwrap_or(Return::Representation) {
        Return::Minimal => Body::None,
        Return::Representation if written.deleted => Body::None,
        Return::Representation => Body::Raw(written.body.clone()),
        Return::OperationOutcome => Body::Json(outcome(
            "information",
            "informational",
            &format!(
                "{}/{} version {} {}",
                written.resource_type,
                written.id,
                written.version,
                if written.created {
                    "created"
                } else {
                    "updated"
                }
            ),
            None,
        )),
    };
    FhirResponse {
        status,
        body,
        version: Some(written.version),
        last_modified_ms: Some(written.last_updated_ms),
        location: Some(format!(
            "{}/{}/_history/{}",
            written.resource_type, written.id, written.version
        )),
    }
}

#[cfg(test)]
mod pin_tests {
    use super::*;

    #[test]
    fn a_checked_update_replaces_exactly_the_version_its_check_saw() {
        let seen = Some(ExpectedRevision::Exact(4)); // version 5 was checked
        assert!(matches!(
            pinned_write(None, seen, "Observation/o"),
            Ok(Some((6, ExpectedRevision::Exact(4))))
        ));
        assert!(matches!(
            pinned_write(Some(5), seen, "Observation/o"),
            Ok(Some((6, ExpectedRevision::Exact(4))))
        ));
        // The client names a version the check did not see: refused before any write.
        let err = pinned_write(Some(6), seen, "Observation/o").unwrap_err();
        assert!(err.to_string().contains("current version is 5"), "{err}");
        assert!(matches!(
            pinned_write(None, Some(ExpectedRevision::NoStream), "x"),
            Ok(Some((1, ExpectedRevision::NoStream)))
        ));
        assert!(pinned_write(Some(1), Some(ExpectedRevision::NoStream), "x").is_err());
        assert!(pinned_write(Some(0), None, "x").is_err());
        // Without a content-dependent grant or If-Match, the write takes what is current.
        assert!(matches!(pinned_write(None, None, "x"), Ok(None)));
    }
}
