//! read (`GET [type]/[id]`) and vread (`GET [type]/[id]/_history/[vid]`): stream reads, the
//! stored bytes served as they are. `If-None-Match` and `If-Modified-Since` answer 304.

use serde_json::Value;
use sphere_domain::fhir::search_query::{parse_elements, subset, SummaryMode};
use sphere_domain::fhir_rest::parse_etag;
use sphere_domain::resource::is_valid_id;
use warp::http::StatusCode;

use super::super::access::{AccessContext, Interaction};
use super::super::format::{Body, FhirResponse};
use super::super::outcome::FhirError;
use super::super::request::FhirRequest;
use super::super::store::{self, StoredVersion};
use crate::app::App;

pub async fn read(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    request: &FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Read, Some(resource_type), None)?;
    let found = if is_valid_id(id) {
        store::current(app.log.as_ref(), resource_type, id).await?
    } else {
        None
    };
    let Some(version) = found else {
        return Err(not_found(resource_type, id));
    };
    answer(ctx, version, request, Interaction::Read)
}

pub async fn vread(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    vid: &str,
    request: &FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::VRead, Some(resource_type), None)?;
    let wanted: Option<u64> = vid.parse().ok();
    let found = match wanted {
        Some(v) if is_valid_id(id) => {
            store::version(app.log.as_ref(), resource_type, id, v).await?
        }
        _ => None,
    };
    let Some(version) = found else {
        return Err(FhirError::NotFound(format!(
            "{resource_type}/{id} has no version {}",
            vid.chars().take(20).collect::<String>()
        )));
    };
    answer(ctx, version, request, Interaction::VRead)
}

fn answer(
    ctx: &AccessContext,
    version: StoredVersion,
    request: &FhirRequest,
    interaction: Interaction,
) -> Result<FhirResponse, FhirError> {
    if version.deleted {
        return Err(FhirError::Gone {
            version: version.version(),
            resource_type: version.resource_type,
            id: version.id,
        });
    }
    ctx.check_stored(interaction, &version.resource_type, &version.body)?;
    crate::audit::note(|n| {
        for p in
            sphere_domain::audit::patients_in(&version.resource_type, &version.id, &version.body)
        {
            n.patient(&p);
        }
    });
    let not_modified = match (
        &request.conditions.if_none_match,
        &request.conditions.if_modified_since,
    ) {
        (Some(tag), _) => tag.trim() == "*" || parse_etag(tag) == Some(version.version()),
        (None, Some(since)) => store::parse_http_date(since)
            // HTTP dates have whole seconds: compare at that precision.
            .is_some_and(|since| version.last_updated_ms / 1000 <= since / 1000),
        (None, None) => false,
    };
    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, Body::None)
    } else {
        (StatusCode::OK, shaped(&version, request)?)
    };
    Ok(FhirResponse {
        status,
        body,
        version: Some(version.version()),
        last_modified_ms: Some(version.last_updated_ms),
        location: None,
    })
}

/// The stored resource, or the part `_summary` / `_elements` ask for.
fn shaped(version: &StoredVersion, request: &FhirRequest) -> Result<Body, FhirError> {
    let summary = match request.param("_summary") {
        None => None,
        Some(value) => match SummaryMode::parse(value) {
            Some(SummaryMode::Count) | None => {
                return Err(FhirError::BadRequest(format!(
                    "_summary={value:?}: a read takes true, text, data or false"
                )))
            }
            mode => mode,
        },
    };
    let elements: Vec<String> = request
        .query
        .iter()
        .filter(|(k, _)| k == "_elements")
        .flat_map(|(_, v)| parse_elements(v))
        .collect();
    if summary.is_none() && elements.is_empty() {
        return Ok(Body::Raw(version.body.clone()));
    }
    let Ok(Value::Object(resource)) = serde_json::from_slice::<Value>(&version.body) else {
        return Err(FhirError::Internal("a stored resource is not JSON".into()));
    };
    Ok(
        match subset(&version.resource_type, resource, summary, &elements) {
            Some(part) => Body::Json(Value::Object(part)),
            None => Body::Raw(version.body.clone()),
        },
    )
}

pub fn not_found(resource_type: &str, id: &str) -> FhirError {
    FhirError::NotFound(format!(
        "{resource_type}/{} does not exist",
        id.chars().take(64).collect::<String>()
    ))
}
