//! `$validate` (`POST [type]/$validate`, `POST [type]/[id]/$validate`): the same validation
//! every write goes through, without writing. The body is the resource itself or a Parameters
//! resource with a `resource` parameter (and optionally `profile`). The answer is always 200
//! with an OperationOutcome; its issues say whether the resource is valid.

use serde_json::Value;
use sphere_domain::fhir::{operation_outcome, validate as validate_resource, validate_against};
use warp::http::StatusCode;

use super::super::access::{AccessContext, Interaction};
use super::super::format::FhirResponse;
use super::super::outcome::FhirError;
use super::super::request::{FhirRequest, Payload};
use super::parse_json;

pub fn validate(
    ctx: &AccessContext,
    resource_type: &str,
    id: Option<&str>,
    request: &FhirRequest,
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Validate, Some(resource_type), None)?;
    let body = match &request.payload {
        Payload::Bytes(b) => parse_json(b)?,
        Payload::Json(v) => v.clone(),
        Payload::None => return Err(FhirError::BadRequest("$validate needs a resource".into())),
    };
    let mut profile = request.param("profile").map(str::to_owned);
    let resource = if body["resourceType"] == "Parameters" {
        let params = body["parameter"].as_array().cloned().unwrap_or_default();
        if let Some(p) = params
            .iter()
            .find(|p| p["name"] == "profile")
            .and_then(|p| p["valueUri"].as_str().or(p["valueCanonical"].as_str()))
        {
            profile = Some(p.to_owned());
        }
        params
            .into_iter()
            .find(|p| p["name"] == "resource")
            .map(|p| p["resource"].clone())
            .ok_or_else(|| FhirError::BadRequest("Parameters has no resource parameter".into()))?
    } else {
        body
    };
    match resource["resourceType"].as_str() {
        Some(t) if t == resource_type => {}
        _ => {
            return Err(FhirError::BadRequest(format!(
                "$validate on {resource_type} needs a {resource_type} resource"
            )))
        }
    }
    if let (Some(id), Some(body_id)) = (id, resource["id"].as_str()) {
        if id != body_id {
            return Err(FhirError::BadRequest(
                "the id in the body does not match the id in the URL".into(),
            ));
        }
    }
    let issues = match &profile {
        Some(p) => validate_against(&resource, p),
        None => validate_resource(&resource),
    };
    let outcome: Value = operation_outcome(&issues);
    Ok(FhirResponse::json(StatusCode::OK, outcome))
}
