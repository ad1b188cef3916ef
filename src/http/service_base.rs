//! The published service base URL list (ONC 170.315(g)(10)(i)): `GET /services-base-url` (a
//! FHIR Bundle) and `/services-base-url.ndjson`, with one Endpoint per FHIR base and the
//! Organization that manages it. Public (no token), cacheable, with an ETag.

use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::app::App;
use crate::config::Config;

/// The Endpoint and Organization resources, derived from the configuration.
pub fn resources(config: &Config) -> Vec<Value> {
    let base = config.fhir_base_url();
    let service = &config.service;
    let organization_id = "sphere-service-organization";
    let endpoint_id = "sphere-fhir-r4";
    let mut organization = json!({
        "resourceType": "Organization",
        "id": organization_id,
        "active": true,
        "name": service.organization_name,
        "endpoint": [{"reference": format!("Endpoint/{endpoint_id}")}],
    });
    if !service.organization_npi.is_empty() {
        organization["identifier"] = json!([{
            "system": "http://hl7.org/fhir/sid/us-npi",
            "value": service.organization_npi,
        }]);
    }
    if !service.organization_address.is_empty() {
        organization["address"] = json!([{
            "line": service.organization_address,
            "city": service.organization_city,
            "state": service.organization_state,
            "postalCode": service.organization_postal_code,
            "country": "US",
        }]);
    }
    let endpoint = json!({
        "resourceType": "Endpoint",
        "id": endpoint_id,
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "hl7-fhir-rest",
            "display": "HL7 FHIR",
        },
        "name": format!("{} FHIR R4 API", service.organization_name),
        "managingOrganization": {"reference": format!("Organization/{organization_id}")},
        "payloadType": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type",
                "code": "none",
                "display": "None",
            }],
        }],
        "payloadMimeType": ["application/fhir+json"],
        "address": base,
    });
    vec![endpoint, organization]
}

/// The list as a FHIR collection Bundle.
pub fn bundle(config: &Config) -> Value {
    let base = config.fhir_base_url();
    let entries: Vec<Value> = resources(config)
        .into_iter()
        .map(|resource| {
            let full_url = format!(
                "{base}/{}/{}",
                resource["resourceType"].as_str().unwrap_or_default(),
                resource["id"].as_str().unwrap_or_default()
            );
            json!({"fullUrl": full_url, "resource": resource})
        })
        .collect();
    json!({
        "resourceType": "Bundle",
        "id": "services-base-url",
        "type": "collection",
        "total": entries.len(),
        "entry": entries,
    })
}

pub fn routes(
    app: Arc<App>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let json_app = app.clone();
    let as_bundle = warp::path!("services-base-url")
        .and(warp::get())
        .and(warp::header::optional::<String>("if-none-match"))
        .map(move |if_none_match: Option<String>| {
            let body = serde_json::to_vec(&bundle(&json_app.config)).unwrap_or_default();
            cacheable(body, "application/fhir+json", if_none_match)
        });
    let as_ndjson = warp::path!("services-base-url.ndjson")
        .and(warp::get())
        .and(warp::header::optional::<String>("if-none-match"))
        .map(move |if_none_match: Option<String>| {
            let mut body = Vec::new();
            for resource in resources(&app.config) {
                body.extend(serde_json::to_vec(&resource).unwrap_or_default());
                body.push(b'\n');
            }
            cacheable(body, "application/fhir+ndjson", if_none_match)
        });
    as_bundle.or(as_ndjson).unify()
}

fn cacheable(
    body: Vec<u8>,
    content_type: &'static str,
    if_none_match: Option<String>,
) -> warp::reply::Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    let not_modified = if_none_match
        .map(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        })
        .unwrap_or(false);
    let mut response = if not_modified {
        warp::reply::with_status(warp::reply(), StatusCode::NOT_MODIFIED).into_response()
    } else {
        let mut r = warp::reply::Response::new(body.into());
        r.headers_mut().insert(
            warp::http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        r
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(warp::http::header::ETAG, value);
    }
    headers.insert(
        warp::http::header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    response
}
