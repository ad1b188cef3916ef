//! capabilities (`GET /metadata`, `GET /fhir/r4/metadata`): the CapabilityStatement, built from
//! the domain's tables (resource types, US Core profiles, search parameters, operations) plus
//! what this server adds: the interactions it implements, Bulk Data, and the SMART security
//! extension.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{json, Value};
use sphere_domain::fhir::{capability_statement, ServerDescription};
use warp::http::StatusCode;

use super::super::access::{AccessContext, Interaction};
use super::super::format::{Body, FhirResponse};
use super::super::outcome::FhirError;
use crate::app::App;
use crate::config::Config;

/// The Bulk Data Access 2.0.0 server CapabilityStatement this server instantiates.
pub const BULK_DATA_CAPABILITY: &str =
    "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

/// Interactions offered on every supported resource type.
pub const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
];

/// Interactions offered at the base.
pub const SYSTEM_INTERACTIONS: &[&str] =
    &["transaction", "batch", "search-system", "history-system"];

pub fn capabilities(app: &App, ctx: &AccessContext) -> Result<FhirResponse, FhirError> {
    // Discovery is public in SMART (the statement is how clients find the auth endpoints),
    // but the check still runs so an audit policy sees it.
    ctx.check(Interaction::Capabilities, None, None)?;
    Ok(FhirResponse::new(
        StatusCode::OK,
        Body::Raw(statement_bytes(&app.config)),
    ))
}

/// The statement, built once per process (the tables are static; the base URL is config).
fn statement_bytes(config: &Config) -> Bytes {
    static CACHED: OnceLock<Bytes> = OnceLock::new();
    CACHED
        .get_or_init(|| Bytes::from(serde_json::to_vec(&statement(config)).unwrap_or_default()))
        .clone()
}

/// This server's CapabilityStatement.
pub fn statement(config: &Config) -> Value {
    let base = config.fhir_base_url();
    let bulk = |name: &str| format!("http://hl7.org/fhir/uv/bulkdata/OperationDefinition/{name}");
    let server = ServerDescription {
        base_url: base.clone(),
        software_name: "Sphere EHR".into(),
        software_version: env!("CARGO_PKG_VERSION").into(),
        date: super::super::store::instant(super::super::store::now_ms())[..10].to_owned(),
        type_interactions: TYPE_INTERACTIONS.iter().map(|s| (*s).to_owned()).collect(),
        system_interactions: SYSTEM_INTERACTIONS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        system_operations: vec![("export".into(), bulk("export"))],
        type_operations: vec![
            ("Patient".into(), "export".into(), bulk("patient-export")),
            ("Group".into(), "export".into(), bulk("group-export")),
        ],
        security: Some(security(config)),
    };
    let mut cs = capability_statement(&server);
    if let Some(list) = cs.get_mut("instantiates").and_then(Value::as_array_mut) {
        list.push(json!(BULK_DATA_CAPABILITY));
    }
    // The access history: read and search only, written by the server itself.
    if let Some(list) = cs
        .pointer_mut("/rest/0/resource")
        .and_then(Value::as_array_mut)
    {
        let entry = crate::fhir::audit_event::capability_entry();
        match list.iter_mut().find(|r| r["type"] == "AuditEvent") {
            Some(existing) => *existing = entry,
            None => list.push(entry),
        }
    }
    cs
}

/// `rest.security`: SMART on FHIR with the oauth-uris extension pointing at this server's
/// authorization endpoints. The SMART server owns these URLs; this is the one function to
/// change if they move.
pub fn security(config: &Config) -> Value {
    let auth = format!("{}/auth", config.base_url());
    let uri = |name: &str, path: &str| json!({"url": name, "valueUri": format!("{auth}/{path}")});
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                uri("token", "token"),
                uri("authorize", "authorize"),
                uri("revoke", "revoke"),
                uri("introspect", "introspect"),
                uri("register", "register"),
                uri("manage", "manage"),
            ],
        }],
        "cors": true,
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
        }],
        "description": "SMART App Launch 2.2.0: authorization code with PKCE, client credentials (backend services), refresh tokens",
    })
}
