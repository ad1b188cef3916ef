//! Client authentication at the token, revocation and introspection endpoints:
//! client_secret_basic, client_secret_post, private_key_jwt (RS384/ES384 assertions,
//! RFC 7523 + SMART Backend Services), or none for public clients.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
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
        return verify_assertion(smart, assertion, first(pairs, "client_id"), &app_of).await;
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

async fn verify_assertion(
    smart: &Smart,
    assertion: &str,
    client_id_param: Option<&str>,
    app_of: &(dyn Fn(&str) -> Result<RegisteredApp, OAuthError> + Sync),
) -> Result<Client, OAuthError> {
    let bad = |d: &str| OAuthError::invalid_client(d.to_owned());
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| bad("client_assertion is not a JWT"))?;
    if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
        return Err(bad("client_assertion must be signed with RS384 or ES384"));
    }
    // Read iss before verifying, only to find whose keys to verify with.
    let iss = unverified_iss(assertion).ok_or_else(|| bad("client_assertion is not a JWT"))?;
    if let Some(id) = client_id_param {
        if id != iss {
            return Err(bad("client_id does not match the assertion's iss"));
        }
    }
    let app = app_of(&iss)?;
    if app.registration.token_endpoint_auth_method != ClientAuthMethod::PrivateKeyJwt {
        return Err(bad("this client is not registered for private_key_jwt"));
    }
    let keys = smart
        .client_keys
        .keys_for(&app, header.kid.as_deref())
        .await?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[smart.token_url()]);
    validation.set_issuer(&[iss.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = 30;
    let mut verified = None;
    let mut candidates = 0;
    for key in keys.candidates(header.alg, header.kid.as_deref()) {
        candidates += 1;
        if let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key.key, &validation)
        {
            verified = Some(data.claims);
            break;
        }
    }
    if candidates == 0 {
        return Err(bad(
            "no registered key of the client matches the client_assertion's kid and alg",
        ));
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

/// The `iss` of a JWT's payload, unverified: only to pick the keys to verify it with.
fn unverified_iss(jwt: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: String,
    }
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok().map(|c| c.iss)
}

/// Assertion `jti`s already spent, per client, until the assertion expires: a replay is
/// refused here without a trip to the log. The log stays the authority (a spent jti is an
/// `assertion-...` stream that exists, so a replay to another node, or after a restart, fails
/// on its expected-revision append); this memory only ever holds unexpired assertions - an
/// expired one is refused by its `exp` anyway - so it stays bounded by the rate of token
/// requests times the five-minute assertion lifetime.
#[derive(Default)]
pub struct SpentAssertions(Mutex<SpentInner>);

#[derive(Default)]
struct SpentInner {
    /// (client, jti) -> expiry (ms).
    spent: HashMap<(String, String), i64>,
    /// Expiry order, for pruning without a scan.
    by_expiry: BinaryHeap<Reverse<(i64, String, String)>>,
}

/// Spent assertions are kept this long past their `exp` (the clock leeway of the check).
const SPENT_LEEWAY_MS: i64 = 30_000;

impl SpentAssertions {
    /// Records `jti` of `client_id` as spent until `expires_ms`; `false` if it already was.
    pub fn spend(&self, client_id: &str, jti: &str, expires_ms: i64, now_ms: i64) -> bool {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        inner.prune(now_ms);
        let key = (client_id.to_owned(), jti.to_owned());
        if inner.spent.contains_key(&key) {
            return false;
        }
        let until = expires_ms + SPENT_LEEWAY_MS;
        inner
            .by_expiry
            .push(Reverse((until, key.0.clone(), key.1.clone())));
        inner.spent.insert(key, until);
        true
    }

    /// Forgets a spend whose token issue failed for another reason than a replay, so the
    /// client may retry with the same assertion.
    pub fn unspend(&self, client_id: &str, jti: &str) {
        let mut inner = self.0.lock().unwrap_or_else(|p| p.into_inner());
        inner.spent.remove(&(client_id.to_owned(), jti.to_owned()));
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).spent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SpentInner {
    fn prune(&mut self, now_ms: i64) {
        while let Some(Reverse((until, _, _))) = self.by_expiry.peek() {
            if *until > now_ms {
                break;
            }
            let Some(Reverse((until, client, jti))) = self.by_expiry.pop() else {
                break;
            };
            let key = (client, jti);
            // Only if this entry is still the one recorded (an unspend and a re-spend leave
            // a newer expiry behind).
            if self.spent.get(&key) == Some(&until) {
                self.spent.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spent_jtis_are_refused_until_they_expire_and_then_pruned() {
        let spent = SpentAssertions::default();
        assert!(spent.spend("c", "j1", 1_000, 0));
        assert!(!spent.spend("c", "j1", 1_000, 10), "a replay is refused");
        assert!(spent.spend("other", "j1", 1_000, 10), "jtis are per client");
        for i in 0..10_000 {
            assert!(spent.spend("c", &format!("bulk-{i}"), 2_000 + i, 20));
        }
        assert_eq!(spent.len(), 10_002);
        // Everything has expired (plus leeway): the next spend prunes it all.
        assert!(spent.spend("c", "late", 100_000, 2_000 + 10_000 + SPENT_LEEWAY_MS));
        assert_eq!(spent.len(), 1);
        // Half expired: only that half goes.
        let spent = SpentAssertions::default();
        for i in 0..1_000 {
            spent.spend("c", &format!("j{i}"), i, 0);
        }
        spent.spend("c", "now", 10_000, 500 + SPENT_LEEWAY_MS);
        assert_eq!(spent.len(), 1_000 - 501 + 1);
        spent.unspend("c", "now");
        assert!(spent.spend("c", "now", 10_000, 500 + SPENT_LEEWAY_MS));
    }
}
