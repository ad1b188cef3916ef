//! The public keys private_key_jwt clients sign their assertions with: registered by value
//! (`jwks`) or published by the client at an https `jwks_uri`.
//!
//! Keys are parsed once per client and kept as `DecodingKey`s: turning a JWK into a key costs
//! more than checking a signature with it, and a backend client sends the same keys on every
//! token request. A `jwks_uri` set is refetched when it is older than the cache TTL, or when
//! an assertion names a `kid` the set does not hold (the client rotated its keys) - but at
//! most once per refetch interval per client, so a stream of made-up kids cannot turn this
//! server into a fetch loop against the client's host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use sphere_projections::token_status::App as RegisteredApp;

use crate::smart::reply::OAuthError;

/// Largest JWKS document accepted from a `jwks_uri`.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long a `jwks_uri` fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One usable public key of a client.
pub struct ClientKey {
    pub kid: Option<String>,
    /// RS384 for RSA keys, ES384 for EC keys: the only assertion algorithms SMART allows.
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// A client's parsed key set and where it came from.
pub struct KeySet {
    pub keys: Vec<ClientKey>,
    /// What the set was built from: the registration (by value) or the URI (fetched).
    source: String,
    fetched: Instant,
}

impl KeySet {
    /// The keys an assertion signed with `alg` (and naming `kid`, if it does) may be checked
    /// against.
    pub fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a ClientKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.algorithm == alg && (kid.is_none() || k.kid.as_deref() == kid))
    }

    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Parses a JWKS into the keys usable for RS384/ES384 assertions; other keys are skipped.
pub fn parse_jwks(jwks: &JwkSet) -> Vec<ClientKey> {
    jwks.keys
        .iter()
        .filter_map(|jwk: &Jwk| {
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS384,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES384,
                _ => return None,
            };
            Some(ClientKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key: DecodingKey::from_jwk(jwk).ok()?,
            })
        })
        .collect()
}

/// The per-client key cache (see the module documentation).
pub struct ClientKeys {
    sets: Mutex<HashMap<String, Arc<KeySet>>>,
    /// When each client's `jwks_uri` was last fetched (successfully or not).
    attempts: Mutex<HashMap<String, Instant>>,
    http: reqwest::Client,
    ttl: Duration,
    refetch: Duration,
}

impl ClientKeys {
    /// `extra_roots`: PEM certificates trusted for `jwks_uri` fetches besides the system's.
    pub fn new(ttl: Duration, refetch: Duration, extra_roots: &[u8]) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .https_only(true)
            .user_agent(concat!("sphere-ehr/", env!("CARGO_PKG_VERSION")));
        if !extra_roots.is_empty() {
            let certs = reqwest::Certificate::from_pem_bundle(extra_roots)
                .map_err(|e| format!("smart.jwks_ca_file is not PEM certificates: {e}"))?;
            builder = builder.tls_certs_merge(certs);
        }
        Ok(Self {
            sets: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            http: builder.build().map_err(|e| e.to_string())?,
            ttl,
            refetch,
        })
    }

    fn cached(&self, client_id: &str) -> Option<Arc<KeySet>> {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .cloned()
    }

    fn store(&self, client_id: &str, set: Arc<KeySet>) {
        self.sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_owned(), set);
    }

    /// The keys of `app` to check an assertion naming `kid` against.
    pub async fn keys_for(
        &self,
        app: &RegisteredApp,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, OAuthError> {
        let reg = &app.registration;
        let cached = self.cached(&reg.client_id);
        if let Some(jwks) = &reg.jwks {
            // By value: the registration is the source; it changes only with a new
            // registration event, which the registration time identifies.
            let source = format!("value:{}", reg.registered_ms);
            if let Some(set) = cached.filter(|s| s.source == source) {
                return Ok(set);
            }
            let parsed: JwkSet = serde_json::from_value(jwks.clone()).map_err(|_| {
                OAuthError::invalid_client("the client's registered jwks is unusable")
            })?;
            let set = Arc::new(KeySet {
                keys: parse_jwks(&parsed),
                source,
                fetched: Instant::now(),
            });
            self.store(&reg.client_id, set.clone());
            return Ok(set);
        }
        let Some(uri) = &reg.jwks_uri else {
            return Err(OAuthError::invalid_client(
                "the client has no registered keys",
            ));
        };
        let source = format!("uri:{uri}");
        let cached = cached.filter(|s| s.source == source);
        if let Some(set) = &cached {
            let fresh = set.fetched.elapsed() < self.ttl;
            let known = kid.is_none_or(|k| set.has_kid(k));
            if fresh && known {
                return Ok(set.clone());
            }
            // An unknown kid may be a key the client just added; refetch, but not more
            // often than the refetch interval.
            if fresh && !self.may_fetch(&reg.client_id) {
                return Ok(set.clone());
            }
        }
        self.note_attempt(&reg.client_id);
        let set = Arc::new(KeySet {
            keys: self.fetch(uri).await?,
            source,
            fetched: Instant::now(),
        });
        self.store(&reg.client_id, set.clone());
        Ok(set)
    }

    fn may_fetch(&self, client_id: &str) -> bool {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(client_id)
            .is_none_or(|t| t.elapsed() >= self.refetch)
    }

    fn note_attempt(&self, client_id: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(client_id.to_owned(), Instant::now());
    }

    async fn fetch(&self, uri: &str) -> Result<Vec<ClientKey>, OAuthError> {
        let failed = |why: &str| {
            tracing::warn!(target: "sphere::auth", jwks_uri = %uri, reason = why, "fetching a client's jwks_uri failed");
            OAuthError::invalid_client(format!("the client's jwks_uri could not be used: {why}"))
        };
        let mut response = self
            .http
            .get(uri)
            .header("accept", "application/json, application/jwk-set+json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    failed("the fetch timed out")
                } else {
                    failed("the server could not be reached over https")
                }
            })?;
        if !response.status().is_success() {
            return Err(failed(&format!(
                "it answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| failed("the response broke off"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_JWKS_BYTES {
                return Err(failed("the document is larger than 256 KiB"));
            }
        }
        let jwks: JwkSet =
            serde_json::from_slice(&body).map_err(|_| failed("the document is not a JWKS"))?;
        let keys = parse_jwks(&jwks);
        if keys.is_empty() {
            return Err(failed("it holds no RSA or EC public key"));
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;

    #[test]
    fn rsa_and_ec_keys_are_parsed_for_their_assertion_algorithms() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES384).unwrap();
        jwk.common.key_id = Some("e1".into());
        let keys = parse_jwks(&JwkSet { keys: vec![jwk] });
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].algorithm, Algorithm::ES384);
        let set = KeySet {
            keys,
            source: String::new(),
            fetched: Instant::now(),
        };
        assert_eq!(set.candidates(Algorithm::ES384, Some("e1")).count(), 1);
        assert_eq!(set.candidates(Algorithm::ES384, Some("e2")).count(), 0);
        assert_eq!(set.candidates(Algorithm::RS384, None).count(), 0);
    }
}
