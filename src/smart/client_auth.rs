//! Client authentication at the token, revocation and introspection endpoints:
//! client_secret_basic, client_secret_post, private_key_jwt (RS384/ES384 assertions,
//! RFC 7523 + SMART Backend Services), or none for public clients.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sphere_domain::smart::events::ClientAuthMethod;
use sphere_projections::token_status::App as RegisteredApp;

use crate::smart::reply::{first, OAuthError};
use crate::smart::users::verify_secret;
use crate::smart::{now_ms, sha256_hex, Smart};

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An authenticated (or, for public clients, identified) client.
#[derive(Debug, Clone)]
pub struct Client {
    pub app: RegisteredApp,
    pub method: ClientAuthMethod,
    /// For private_key_jwt: the assertion's `jti` and `exp`, to be spent once.
    pub assertion: Option<(String, i64)>,
}

impl Client {
    pub fn client_id(&self) -> &str {
        &self.app.registration.client_id
    }
}

/// Secrets that already passed argon2, by (client, SHA-256 of secret, stored hash): argon2
/// costs tens of milliseconds by design, which is right for one login and wrong for every
/// token request of a busy confidential client. A rotated secret changes the stored hash and
/// so misses the cache.
#[derive(Default)]
pub struct VerifiedSecrets(Mutex<HashMap<(String, String), String>>);

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    exp: i64,
    jti: String,
}

fn basic(header: &str) -> Option<(String, String)> {
    let encoded = header.get(6..)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    // RFC 6749 2.3.1: both parts are form-urlencoded before Basic encoding.
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

/// Authenticates the client of a token-endpoint style request.
pub async fn authenticate(
    smart: &Smart,
    secrets: &VerifiedSecrets,
    pairs: &[(String, String)],
    authorization: Option<&str>,
) -> Result<Client, OAuthError> {
    let app_of = |id: &str| -> Result<RegisteredApp, OAuthError> {
        let app = smart
            .status()
            .apps
            .get(id)
            .cloned()
            .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
        if !app.usable() {
            return Err(OAuthError::invalid_client(
                "the client is not approved or is suspended",
            ));
        }
        Ok(app)
    };
    if let Some(header) =
        authorization.filter(|h| h.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("basic ")))
    {
        let (id, secret) = basic(header).ok_or_else(|| {
            let mut e = OAuthError::invalid_client("malformed Basic credentials");
            e.basic_challenge = true;
            e
        })?;
        let app = app_of(&id).map_err(|mut e| {
            e.basic_challenge = true;
            e
        })?;
        check_secret(secrets, &app, &secret, ClientAuthMethod::ClientSecretBasic).await?;
        return Ok(Client {
            app,
            method: ClientAuthMethod::ClientSecretBasic,
            assertion: None,
        });
    }
    if let Some(kind) = first(pairs, "client_assertion_type") {
        if kind != JWT_BEARER {
            return Err(OAuthError::invalid_request("client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
        }
        let assertion = first(pairs, "client_assertion")
            .ok_or_else(|| OAuthError::invalid_request("client_assertion is missing"))?;
        return verify_assertion(smart, assertion, first(pairs, "client_id"), &app_of);
    }
    let id = first(pairs, "client_id")
        .ok_or_else(|| OAuthError::invalid_client("no client authentication and no client_id"))?;
    let app = app_of(id)?;
    match first(pairs, "client_secret") {
        Some(secret) => {
            check_secret(secrets, &app, secret, ClientAuthMethod::ClientSecretPost).await?;
            Ok(Client {
                app,
                method: ClientAuthMethod::ClientSecretPost,
                assertion: None,
            })
        }
        None if app.registration.token_endpoint_auth_method == ClientAuthMethod::None => {
            Ok(Client {
                app,
                method: ClientAuthMethod::None,
                assertion: None,
            })
        }
        None => Err(OAuthError::invalid_client("this client must authenticate")),
    }
}

async fn check_secret(
    secrets: &VerifiedSecrets,
    app: &RegisteredApp,
    secret: &str,
    method: ClientAuthMethod,
) -> Result<(), OAuthError> {
    let registered = app.registration.token_endpoint_auth_method;
    // Basic and post are both secret methods; a client registered for one may use the other
    // (RFC 6749 2.3.1 requires Basic support for any secret client).
    if !registered.uses_secret() || !method.uses_secret() {
        let mut e = OAuthError::invalid_client("this client does not authenticate with a secret");
        e.basic_challenge = method == ClientAuthMethod::ClientSecretBasic;
        return Err(e);
    }
    let Some(hash) = app.secret_hash.clone() else {
        return Err(OAuthError::invalid_client("the client has no secret"));
    };
    let key = (app.registration.client_id.clone(), sha256_hex(secret));
    let cached = secrets
        .0
        .lock()
        .map(|m| m.get(&key) == Some(&hash))
        .unwrap_or(false);
    if cached {
        return Ok(());
    }
    let secret_owned = secret.to_owned();
    let hash_owned = hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify_secret(&secret_owned, &hash_owned))
        .await
        .unwrap_or(false);
    if !ok {
        let mut e = OAuthError::invalid_client("client authentication failed");
        e.basic_challenge = method == ClientAuthMethod::ClientSecretBasic;
        return Err(e);
    }
    if let Ok(mut m) = secrets.0.lock() {
        m.insert(key, hash);
    }
    Ok(())
}

fn verify_assertion(
    smart: &Smart,
    assertion: &str,
    client_id_param: Option<&str>,
    app_of: &dyn Fn(&str) -> Result<RegisteredApp, OAuthError>,
) -> Result<Client, OAuthError> {
    let bad = |d: &str| OAuthError::invalid_client(d.to_owned());
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| bad("client_assertion is not a JWT"))?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(bad("client_assertion must be signed with RS384 or ES384"));
    }
    // Read iss before verifying, only to find whose keys to verify with.
    let unverified = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(assertion)
        .map_err(|_| bad("client_assertion is not a JWT"))?;
    let iss = unverified.claims["iss"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if let Some(id) = client_id_param {
        if id != iss {
            return Err(bad("client_id does not match the assertion's iss"));
        }
    }
    let app = app_of(&iss)?;
    if app.registration.token_endpoint_auth_method != ClientAuthMethod::PrivateKeyJwt {
        return Err(bad("this client is not registered for private_key_jwt"));
    }
    let jwks: JwkSet = app
        .registration
        .jwks
        .clone()
        .and_then(|j| serde_json::from_value(j).ok())
        .ok_or_else(|| bad("the client has no registered keys"))?;
    let family_ok = |jwk: &jsonwebtoken::jwk::Jwk| match (&jwk.algorithm, header.alg) {
        (jsonwebtoken::jwk::AlgorithmParameters::RSA(_), Algorithm::RS384) => true,
        (jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_), Algorithm::ES384) => true,
        _ => false,
    };
    let candidates: Vec<&jsonwebtoken::jwk::Jwk> = match &header.kid {
        Some(kid) => jwks
            .keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid))
            .collect(),
        None => jwks.keys.iter().collect(),
    };
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[smart.token_url()]);
    validation.set_issuer(&[iss.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = 30;
    let mut verified = None;
    for jwk in candidates.into_iter().filter(|k| family_ok(k)) {
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
            verified = Some(data.claims);
            break;
        }
    }
    let claims = verified.ok_or_else(|| {
        bad("client_assertion signature, audience, issuer or expiry is not valid")
    })?;
    if claims.sub != claims.iss {
        return Err(bad("client_assertion sub must equal iss"));
    }
    let now_s = now_ms() / 1000;
    if claims.exp > now_s + 300 + 30 {
        return Err(bad("client_assertion exp is more than five minutes ahead"));
    }
    if claims.jti.is_empty() {
        return Err(bad("client_assertion needs a jti"));
    }
    Ok(Client {
        app,
        method: ClientAuthMethod::PrivateKeyJwt,
        assertion: Some((claims.jti, claims.exp * 1000)),
    })
}
