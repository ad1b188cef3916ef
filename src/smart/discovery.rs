//! What the authorization server supports, described once and published as
//! `/.well-known/smart-configuration` (at the root and under the FHIR base),
//! `/.well-known/openid-configuration` and `/.well-known/jwks.json`.

use std::sync::Arc;

use serde_json::{json, Value};
use sphere_domain::smart::scope::CONTEXT_SCOPES;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::app::App;
use crate::smart::reply::cors;

/// SMART capabilities this server implements (SMART App Launch 2.2.0 8.1.2).
pub const CAPABILITIES: &[&str] = &[
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-passthrough-banner",
    "context-passthrough-style",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "context-banner",
    "context-style",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
];

pub const GRANT_TYPES: &[&str] = &["authorization_code", "refresh_token", "client_credentials"];
pub const AUTH_METHODS: &[&str] = &[
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
    "none",
];
pub const ASSERTION_ALGS: &[&str] = &["RS384", "ES384"];
pub const RESOURCE_SCOPE_EXAMPLES: &[&str] = &[
    "patient/*.rs",
    "user/*.rs",
    "system/*.rs",
    "patient/*.read",
    "user/*.read",
    "system/*.read",
    "patient/*.cruds",
    "user/*.cruds",
];

/// The one description, as the smart-configuration document.
pub fn smart_configuration(app: &App) -> Value {
    let smart = &app.smart;
    let base = smart.issuer();
    let mut scopes: Vec<&str> = CONTEXT_SCOPES.iter().map(|(s, _)| *s).collect();
    scopes.extend(RESOURCE_SCOPE_EXAMPLES);
    json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "authorization_endpoint": format!("{base}/auth/authorize"),
        "token_endpoint": smart.token_url(),
        "introspection_endpoint": format!("{base}/auth/introspect"),
        "revocation_endpoint": format!("{base}/auth/revoke"),
        "registration_endpoint": format!("{base}/auth/register"),
        "management_endpoint": format!("{base}/auth/grants"),
        "user_access_brand_bundle": Value::Null,
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    })
}

/// The OpenID Connect discovery document, from the same description.
pub fn openid_configuration(app: &App) -> Value {
    let smart = smart_configuration(app);
    json!({
        "issuer": smart["issuer"],
        "authorization_endpoint": smart["authorization_endpoint"],
        "token_endpoint": smart["token_endpoint"],
        "jwks_uri": smart["jwks_uri"],
        "registration_endpoint": smart["registration_endpoint"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "fhirUser", "profile", "offline_access"],
        "token_endpoint_auth_methods_supported": smart["token_endpoint_auth_methods_supported"],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGS,
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "fhirUser", "nonce"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": GRANT_TYPES,
    })
}

fn json_reply(body: &Value) -> warp::reply::Response {
    let mut response =
        warp::reply::with_status(warp::reply::json(body), StatusCode::OK).into_response();
    response.headers_mut().insert(
        "cache-control",
        warp::http::HeaderValue::from_static("max-age=300"),
    );
    cors(response)
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let with_app = warp::any().map(move || app.clone());
    let smart_root = warp::path!(".well-known" / "smart-configuration");
    let smart_fhir = warp::path!("fhir" / "r4" / ".well-known" / "smart-configuration");
    let smart = warp::get()
        .and(smart_root.or(smart_fhir).unify())
        .and(with_app.clone())
        .map(|app: Arc<App>| json_reply(&smart_configuration(&app)));
    let openid = warp::get()
        .and(warp::path!(".well-known" / "openid-configuration"))
        .and(with_app.clone())
        .map(|app: Arc<App>| json_reply(&openid_configuration(&app)));
    let jwks = warp::get()
        .and(warp::path!(".well-known" / "jwks.json"))
        .and(with_app.clone())
        .map(|app: Arc<App>| {
            let body = serde_json::to_value(app.smart.keys.get().jwks()).unwrap_or(Value::Null);
            json_reply(&body)
        });
    let style = warp::get()
        .and(warp::path!("auth" / "smart-style.json"))
        .map(|| json_reply(&smart_style()));
    smart
        .or(openid)
        .unify()
        .or(jwks)
        .unify()
        .or(style)
        .unify()
        .boxed()
}

/// The style document a launched app may use to look like the EHR (`smart_style_url`).
pub fn smart_style() -> Value {
    json!({
        "color_background": "#f7f8fa",
        "color_error": "#b00020",
        "color_highlight": "#0b5cad",
        "color_modal_backdrop": "",
        "color_success": "#2e7d32",
        "color_text": "#1b1f24",
        "dim_border_radius": "6px",
        "dim_font_size": "16px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, sans-serif",
        "font_family_heading": "system-ui, sans-serif"
    })
}
