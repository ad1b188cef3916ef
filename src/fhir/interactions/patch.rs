//! patch (`PATCH [type]/[id]` with `Content-Type: application/json-patch+json`): a JSON Patch
//! (RFC 6902) applied to the current version, then written like an update of the whole
//! resource (validated, versioned, an event).
//!
//! The write expects the version the patch was applied to, so a concurrent update can never be
//! overwritten by a patch computed on an older version: with `If-Match` the client gets 412,
//! without it the patch is re-applied to the newer version (a few times, then 409).

use base64::Engine;
use serde_json::{Map, Value};
use sphere_domain::fhir_rest::parse_etag;
use sphere_domain::json_patch;
use sphere_domain::resource::is_valid_id;

use super::super::access::{AccessContext, Interaction};
use super::super::format::FhirResponse;
use super::super::outcome::FhirError;
use super::super::request::{FhirRequest, Payload};
use super::super::store;
use super::read::not_found;
use super::update::{write, Pin};
use crate::app::App;

/// Attempts when other writers keep winning the race to the next version.
const RETRIES: usize = 3;

pub async fn patch(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    request: FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Update, Some(resource_type), None)?;
    if !is_valid_id(id) {
        return Err(not_found(resource_type, id));
    }
    let operations = operations(&request.payload)?;
    let if_match = match &request.conditions.if_match {
        Some(tag) => Some(parse_etag(tag).ok_or_else(|| {
            FhirError::BadRequest("If-Match must be a version ETag like W/\"3\"".into())
        })?),
        None => None,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (resource, version) =
            patched(app, ctx, resource_type, id, &operations, if_match).await?;
        match write(
            app,
            ctx,
            resource_type,
            id,
            resource,
            Pin {
                if_match: Some(version),
                checked: None,
            },
            request.prefer,
        )
        .await
        {
            Err(FhirError::PreconditionFailed(_)) if if_match.is_none() && attempt < RETRIES => {
                continue
            }
            Err(FhirError::PreconditionFailed(_)) if if_match.is_none() => {
                return Err(FhirError::Conflict(format!(
                    "{resource_type}/{id} is being changed concurrently; retry"
                )))
            }
            other => return other,
        }
    }
}

/// Reads a patch from a request body or Bundle entry and parses it.
pub(super) fn operations(payload: &Payload) -> Result<Vec<json_patch::Operation>, FhirError> {
    json_patch::parse(&patch_document(payload)?)
        .map_err(|e| FhirError::BadRequest(format!("the JSON Patch is not valid: {e}")))
}

/// The current version of `resource_type/id` with `operations` applied, and the version it was
/// applied to (which the write must expect). Access is checked on both the old and the new
/// content; the type, id and server-owned meta cannot be patched.
pub(super) async fn patched(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    operations: &[json_patch::Operation],
    if_match: Option<u64>,
) -> Result<(Map<String, Value>, u64), FhirError> {
    let Some(current) = store::current(app.log.as_ref(), resource_type, id).await? else {
        return Err(not_found(resource_type, id));
    };
    if current.deleted {
        return Err(FhirError::Gone {
            version: current.version(),
            resource_type: current.resource_type,
            id: current.id,
        });
    }
    if let Some(v) = if_match {
        if v != current.version() {
            return Err(FhirError::PreconditionFailed(format!(
                "If-Match names version {v} but {resource_type}/{id} is at {}",
                current.version()
            )));
        }
    }
    let before: Value = serde_json::from_slice(&current.body)
        .map_err(|_| FhirError::Internal("a stored resource is not JSON".into()))?;
    // The patch may only touch what the client may see and change: a patch answers with the
    // resource, and a `test` operation would reveal values to a write-only grant.
    ctx.check(Interaction::Read, Some(resource_type), Some(&before))?;
    ctx.check(Interaction::Update, Some(resource_type), Some(&before))?;
    let after = json_patch::apply(&before, operations)
        .map_err(|e| FhirError::Unprocessable(format!("the patch cannot be applied: {e}")))?;
    let Value::Object(mut resource) = after else {
        return Err(FhirError::Unprocessable(
            "the patched document is not a resource (not a JSON object)".into(),
        ));
    };
    if resource.get("resourceType").and_then(Value::as_str) != Some(resource_type)
        || resource.get("id").and_then(Value::as_str) != Some(id)
    {
        return Err(FhirError::Unprocessable(
            "a patch may not change the resource's type or id".into(),
        ));
    }
    // The server owns versionId and lastUpdated; a patch of them is not an edit.
    if let Some(Value::Object(meta)) = resource.get_mut("meta") {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            resource.remove("meta");
        }
    }
    let value = Value::Object(resource);
    ctx.check(Interaction::Update, Some(resource_type), Some(&value))?;
    let Value::Object(resource) = value else {
        unreachable!("built from an object just above")
    };
    Ok((resource, current.version()))
}

/// The patch document: the HTTP body, or in a Bundle entry a Binary whose `data` is the patch
/// (the FHIR convention for JSON Patch in Bundles) or the patch array itself.
fn patch_document(payload: &Payload) -> Result<Value, FhirError> {
    match payload {
        Payload::None => Err(FhirError::BadRequest(
            "a JSON Patch body is required".into(),
        )),
        Payload::Bytes(b) => super::parse_json(b),
        Payload::Json(Value::Array(ops)) => Ok(Value::Array(ops.clone())),
        Payload::Json(Value::Object(binary))
            if binary.get("resourceType").and_then(Value::as_str) == Some("Binary") =>
        {
            let data = binary
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| FhirError::BadRequest("the patch Binary has no data".into()))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| FhirError::BadRequest("the patch Binary's data is not base64".into()))?;
            super::parse_json(&bytes)
        }
        Payload::Json(_) => Err(FhirError::UnsupportedMediaType(
            "PATCH takes a JSON Patch (application/json-patch+json); FHIRPath Patch is not supported".into(),
        )),
    }
}
