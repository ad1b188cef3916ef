//! Access-token validation for the FHIR API and Bulk Data: signature with this server's key
//! (`kid` must be one of ours - current, or retired by a rotation and still valid - and `alg`
//! must be that key's algorithm, so `none`, HS256-with-the-public-key and foreign keys all
//! fail), `exp`, `iss`, `aud` = FHIR base, and the `jti` live in the token-status view
//! (not revoked).

use jsonwebtoken::Validation;
use sphere_domain::smart::scope::ScopeSet;

use crate::smart::token::AccessClaims;
use crate::smart::Smart;

/// Most verified tokens remembered; past it the memory starts over (a miss costs one
/// signature check, never a wrong answer).
const VERIFIED_CACHE: usize = 20_000;

/// A validated access token and what it grants.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub claims: AccessClaims,
    pub scopes: ScopeSet,
    pub username: Option<String>,
    /// `Patient/123` (relative) when the grant has a fhirUser.
    pub fhir_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token has been revoked")]
    Revoked,
    #[error("rate limit reached")]
    RateLimited(u64),
}

/// The token of an `Authorization: Bearer ...` header value.
pub fn bearer_of(header: Option<&str>) -> Option<&str> {
    let h = header?.trim();
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Smart {
    /// Verifies a token's signature and claims, without the revocation check.
    pub fn decode_access(&self, token: &str) -> Result<AccessClaims, BearerError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| BearerError::Invalid)?;
        let keys = self.keys.get();
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| keys.by_kid(kid))
            .filter(|k| k.algorithm == header.alg)
            .ok_or(BearerError::Invalid)?;
        let mut validation = Validation::new(key.algorithm);
        validation.set_audience(&[self.fhir_base()]);
        validation.set_issuer(&[self.issuer()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => BearerError::Expired,
                _ => BearerError::Invalid,
            })
    }

    /// Validates the bearer token of a request: signature, claims, revocation, rate limit.
    ///
    /// A token whose signature and claims passed once is remembered (bounded), so the hot
    /// path re-checks only expiry and revocation: the RSA verification is most of the cost
    /// of a token check, and an app sends the same token for an hour.
    pub fn validate_bearer(&self, authorization: Option<&str>) -> Result<AccessToken, BearerError> {
        let token = bearer_of(authorization).ok_or(BearerError::Missing)?;
        let cached = self
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(token).cloned());
        let claims = match cached {
            Some(claims) => {
                if claims.exp <= crate::smart::now_ms() / 1000 {
                    return Err(BearerError::Expired);
                }
                claims
            }
            None => {
                let claims = self.decode_access(token)?;
                if let Ok(mut m) = self.verified.lock() {
                    if m.len() >= VERIFIED_CACHE {
                        m.clear();
                    }
                    m.insert(token.to_owned(), claims.clone());
                }
                claims
            }
        };
        let (username, fhir_user) = {
            let status = self.status();
            let grant = status
                .active_access(&claims.jti)
                .ok_or(BearerError::Revoked)?;
            (grant.username.clone(), grant.fhir_user.clone())
        };
        self.rate_limit(&claims.client_id)
            .map_err(BearerError::RateLimited)?;
        Ok(AccessToken {
            scopes: ScopeSet::parse(&claims.scope),
            claims,
            username,
            fhir_user,
        })
    }
}

/// The authorization server the FHIR API's access-context extractor asks. Set by
/// [`crate::app::App::start`]; the extractor's signature takes no application handle, so the
/// running server registers itself here (the latest start wins, which is the only one in a
/// server process).
static INSTALLED: std::sync::RwLock<Option<std::sync::Weak<Smart>>> = std::sync::RwLock::new(None);

pub fn install(smart: &std::sync::Arc<Smart>) {
    if let Ok(mut slot) = INSTALLED.write() {
        *slot = Some(std::sync::Arc::downgrade(smart));
    }
}

pub fn installed() -> Option<std::sync::Arc<Smart>> {
    INSTALLED.read().ok()?.as_ref()?.upgrade()
}
