//! App registration: `POST /auth/register` (RFC 7591 dynamic registration), shared with
//! `sphere apps register` and the demo. Each app is the stream `app-{client_id}`; its client
//! secret is shown once and kept only as an argon2 hash.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use sphere_domain::smart::events::{self as ev, AppRegistered, ClientAuthMethod};
use sphere_domain::smart::scope::ScopeSet;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use crate::eventlog::{EventLog, ExpectedRevision, NewEvent, Position};
use crate::smart::reply::{cors, json_no_store};
use crate::smart::users::hash_secret;
use crate::smart::{now_ms, random_token};

/// RFC 7591 client metadata this server understands.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientMetadata {
    #[serde(default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub grant_types: Vec<String>,
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub jwks: Option<Value>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub launch_uri: Option<String>,
}

/// A new registration: what the client is told once.
#[derive(Debug, Clone)]
pub struct Registered {
    pub registration: AppRegistered,
    pub client_secret: Option<String>,
    pub position: Position,
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("invalid_redirect_uri: {0}")]
    RedirectUri(String),
    #[error("invalid_client_metadata: {0}")]
    Metadata(String),
    #[error("server_error: {0}")]
    Server(String),
}

fn redirect_uri_ok(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|_| format!("{uri} is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri} has a fragment"));
    }
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        // Native apps use private-use schemes (RFC 8252 7.1), e.g. com.example.app:/cb.
        s if s.contains('.') => Ok(()),
        _ => Err(format!(
            "{uri} must use https (http only for localhost, or a private-use scheme)"
        )),
    }
}

/// A JWKS with at least one RS384/ES384-capable public key, each with a `kid`.
fn jwks_ok(jwks: &Value) -> Result<(), String> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.clone()).map_err(|e| format!("jwks does not parse: {e}"))?;
    if set.keys.is_empty() {
        return Err("jwks has no keys".into());
    }
    for key in &set.keys {
        if key.common.key_id.is_none() {
            return Err("every key in jwks needs a kid".into());
        }
        jsonwebtoken::DecodingKey::from_jwk(key)
            .map_err(|e| format!("a key in jwks is unusable: {e}"))?;
    }
    Ok(())
}

/// A `jwks_uri` must be an absolute https URL without credentials or a fragment: keys
/// fetched over anything weaker could be swapped in transit.
fn jwks_uri_ok(uri: &str) -> Result<(), String> {
    let url = url::Url::parse(uri).map_err(|_| format!("jwks_uri {uri} is not an absolute URL"))?;
    if url.scheme() != "https" {
        return Err("jwks_uri must use https".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("jwks_uri has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("jwks_uri must not carry credentials or a fragment".into());
    }
    Ok(())
}

/// Validates `metadata` and appends the registration. `approved`: whether the app may be
/// used at once (operators set `smart.approval_required`; the CLI registers approved).
pub async fn register(
    log: &dyn EventLog,
    metadata: ClientMetadata,
    approved: bool,
) -> Result<Registered, RegisterError> {
    let meta = |s: &str| RegisterError::Metadata(s.to_owned());
    let method = match metadata.token_endpoint_auth_method.as_deref() {
        None => ClientAuthMethod::ClientSecretBasic,
        Some(m) => ClientAuthMethod::parse(m)
            .ok_or_else(|| meta("token_endpoint_auth_method is not supported"))?,
    };
    let mut grant_types = metadata.grant_types.clone();
    if grant_types.is_empty() {
        grant_types = vec!["authorization_code".into()];
    }
    for g in &grant_types {
        if !crate::smart::discovery::GRANT_TYPES.contains(&g.as_str()) {
            return Err(RegisterError::Metadata(format!(
                "grant type {g} is not supported"
            )));
        }
    }
    let code_flow = grant_types.iter().any(|g| g == "authorization_code");
    if code_flow && !grant_types.iter().any(|g| g == "refresh_token") {
        grant_types.push("refresh_token".into());
    }
    if code_flow && metadata.redirect_uris.is_empty() {
        return Err(RegisterError::RedirectUri(
            "authorization_code clients need redirect_uris".into(),
        ));
    }
    for uri in &metadata.redirect_uris {
        redirect_uri_ok(uri).map_err(RegisterError::RedirectUri)?;
    }
    if grant_types.iter().any(|g| g == "client_credentials")
        && method != ClientAuthMethod::PrivateKeyJwt
    {
        return Err(meta(
            "client_credentials (backend services) requires private_key_jwt",
        ));
    }
    if method == ClientAuthMethod::PrivateKeyJwt {
        match (&metadata.jwks, &metadata.jwks_uri) {
            // RFC 7591 2: the two must not both be present.
            (Some(_), Some(_)) => return Err(meta("give jwks or jwks_uri, not both")),
            (Some(jwks), None) => jwks_ok(jwks).map_err(RegisterError::Metadata)?,
            (None, Some(uri)) => jwks_uri_ok(uri).map_err(RegisterError::Metadata)?,
            (None, None) => return Err(meta("private_key_jwt needs jwks or jwks_uri")),
        }
    } else if metadata.jwks.is_some() || metadata.jwks_uri.is_some() {
        return Err(meta(
            "jwks and jwks_uri are only for private_key_jwt clients",
        ));
    }
    // Unknown scopes are dropped, as everywhere else.
    let scope = ScopeSet::parse(metadata.scope.as_deref().unwrap_or_default()).to_string();
    if scope.is_empty() {
        return Err(meta("scope must list the scopes the app will ask for"));
    }
    let secret = method.uses_secret().then(random_token);
    let secret_hash = match &secret {
        Some(s) => Some(hash_secret(s).map_err(RegisterError::Server)?),
        None => None,
    };
    let client_id = uuid::Uuid::new_v4().simple().to_string();
    let registration = AppRegistered {
        client_id: client_id.clone(),
        client_name: metadata
            .client_name
            .unwrap_or_else(|| "Unnamed app".into())
            .chars()
            .take(200)
            .collect(),
        redirect_uris: metadata.redirect_uris,
        grant_types,
        token_endpoint_auth_method: method,
        scope,
        jwks: metadata.jwks,
        jwks_uri: metadata.jwks_uri,
        launch_uri: metadata.launch_uri,
        secret_hash,
        approved,
        registered_ms: now_ms(),
    };
    let event = NewEvent::json(ev::APP_REGISTERED, &registration)
        .map_err(|e| RegisterError::Server(e.to_string()))?;
    let result = log
        .append(
            &ev::app_stream(&client_id),
            ExpectedRevision::NoStream,
            vec![event],
        )
        .await
        .map_err(|e| RegisterError::Server(e.to_string()))?;
    Ok(Registered {
        registration,
        client_secret: secret,
        position: result.position,
    })
}

/// The RFC 7591 response body.
pub fn response_body(r: &Registered) -> Value {
    let reg = &r.registration;
    let mut body = json!({
        "client_id": reg.client_id,
        "client_id_issued_at": reg.registered_ms / 1000,
        "client_name": reg.client_name,
        "redirect_uris": reg.redirect_uris,
        "grant_types": reg.grant_types,
        "response_types": if reg.grant_types.iter().any(|g| g == "authorization_code") { json!(["code"]) } else { json!([]) },
        "token_endpoint_auth_method": reg.token_endpoint_auth_method.as_str(),
        "scope": reg.scope,
    });
    if let Some(secret) = &r.client_secret {
        body["client_secret"] = json!(secret);
        body["client_secret_expires_at"] = json!(0);
    }
    if let Some(jwks) = &reg.jwks {
        body["jwks"] = jwks.clone();
    }
    if let Some(uri) = &reg.jwks_uri {
        body["jwks_uri"] = json!(uri);
    }
    if !reg.approved {
        body["approval"] = json!("pending: an operator must approve this app before use");
    }
    body
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    warp::post()
        .and(warp::path!("auth" / "register"))
        .and(warp::body::content_length_limit(256 * 1024))
        .and(warp::body::bytes())
        .and_then(move |body: bytes::Bytes| {
            let app = app.clone();
            async move {
                let reply = match serde_json::from_slice::<ClientMetadata>(&body) {
                    Err(e) => error(
                        "invalid_client_metadata",
                        &format!("body is not client metadata JSON: {e}"),
                    ),
                    Ok(metadata) => {
                        let approved = !app.smart.approval_required;
                        match register(app.log.as_ref(), metadata, approved).await {
                            Ok(r) => {
                                if app.smart.wait_for(r.position).await.is_err() {
                                    error(
                                        "server_error",
                                        "registration stored but not yet visible; retry shortly",
                                    )
                                } else {
                                    json_no_store(&response_body(&r), StatusCode::CREATED)
                                }
                            }
                            Err(RegisterError::RedirectUri(d)) => error("invalid_redirect_uri", &d),
                            Err(RegisterError::Metadata(d)) => error("invalid_client_metadata", &d),
                            Err(RegisterError::Server(d)) => {
                                tracing::error!(error = %d, "registration failed");
                                json_no_store(
                                    &json!({"error": "server_error"}),
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                )
                            }
                        }
                    }
                };
                Ok::<_, std::convert::Infallible>(cors(reply))
            }
        })
        .boxed()
}

fn error(code: &str, description: &str) -> warp::reply::Response {
    json_no_store(
        &json!({"error": code, "error_description": description}),
        StatusCode::BAD_REQUEST,
    )
}
