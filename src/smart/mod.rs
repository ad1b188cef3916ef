//! The SMART App Launch 2.2.0 authorization server: discovery, registration, login and
//! consent, tokens, revocation, introspection, backend services.
//!
//! A file per concept: `discovery` (what the server supports, published three ways),
//! `keys`, `register` (apps), `users`, `authorize` (the browser flow: login and consent pages),
//! `token` (the token endpoint), `client_auth`, `revoke` (revocation and introspection),
//! `bearer` (access-token validation for the FHIR API), `launch` (EHR launch contexts),
//! `grants` (the page where users revoke apps), `cli` and `demo`.

pub mod authorize;
pub mod bearer;
pub mod cli;
pub mod client_auth;
pub mod client_keys;
pub mod demo;
pub mod discovery;
pub mod grants;
pub mod keys;
pub mod launch;
pub mod login_throttle;
pub mod pages;
pub mod policy;
pub mod register;
pub mod reply;
pub mod revoke;
pub mod session;
pub mod token;
pub mod users;

use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use sphere_projections::token_status::TokenStatus;
use warp::filters::BoxedFilter;
use warp::Filter;

use crate::app::App;
use crate::config::Config;
use crate::eventlog::Position;
use crate::projection::ProjectionHandle;

pub use keys::{KeyError, KeyRing, SigningKeys};

/// Why the authorization server could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("smart.jwks_ca_file {path}: {message}")]
    JwksCa { path: String, message: String },
}

/// The authorization server's state, held by [`App`].
pub struct Smart {
    /// The signing keys; a rotation by `sphere keys rotate` is picked up by [`Smart::watch_keys`].
    pub keys: KeyRing,
    pub status: Arc<RwLock<TokenStatus>>,
    status_handle: ProjectionHandle,
    pub sessions: session::Sessions,
    /// Failed sign-ins per username and address, and lockouts.
    pub logins: login_throttle::LoginThrottle,
    pub secrets: client_auth::VerifiedSecrets,
    /// Parsed public keys of private_key_jwt clients (by value or fetched from jwks_uri).
    pub client_keys: client_keys::ClientKeys,
    /// Assertion jtis spent and not yet expired.
    pub spent_assertions: client_auth::SpentAssertions,
    /// Access tokens whose signature and claims were verified, by token text.
    verified: std::sync::Mutex<std::collections::HashMap<String, token::AccessClaims>>,
    limiter: DefaultKeyedRateLimiter<String>,
    issuer: String,
    fhir_base: String,
    pub access_token_seconds: u64,
    pub refresh_token_ms: i64,
    pub approval_required: bool,
}

impl Smart {
    pub fn new(
        config: &Config,
        status: Arc<RwLock<TokenStatus>>,
        status_handle: ProjectionHandle,
    ) -> Result<Self, SetupError> {
        // A retired key signed tokens for at most this long (access tokens and id_tokens
        // share the lifetime).
        let lifetime_ms = config.smart.access_token_seconds as i64 * 1000;
        let keys = KeyRing::open(&config.data_dir.join("keys"), lifetime_ms)?;
        let ca_path = &config.smart.jwks_ca_file;
        let extra_roots = if ca_path.is_empty() {
            Vec::new()
        } else {
            std::fs::read(ca_path).map_err(|e| SetupError::JwksCa {
                path: ca_path.clone(),
                message: e.to_string(),
            })?
        };
        let client_keys = client_keys::ClientKeys::new(
            Duration::from_secs(config.smart.jwks_cache_seconds),
            Duration::from_secs(config.smart.jwks_refetch_seconds),
            &extra_roots,
        )
        .map_err(|message| SetupError::JwksCa {
            path: ca_path.clone(),
            message,
        })?;
        let per_second =
            NonZeroU32::new(config.smart.rate_limit_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.smart.rate_limit_burst).unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            keys,
            status,
            status_handle,
            sessions: session::Sessions::default(),
            logins: login_throttle::LoginThrottle::new(
                config.smart.login_max_failures,
                config.smart.login_lockout_seconds,
            ),
            secrets: client_auth::VerifiedSecrets::default(),
            client_keys,
            spent_assertions: client_auth::SpentAssertions::default(),
            verified: std::sync::Mutex::new(std::collections::HashMap::new()),
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            issuer: config.base_url(),
            fhir_base: config.fhir_base_url(),
            access_token_seconds: config.smart.access_token_seconds,
            refresh_token_ms: (config.smart.refresh_token_days as i64) * 86_400_000,
            approval_required: config.smart.approval_required,
        })
    }

    /// The OAuth issuer (the server's base URL).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The FHIR base URL: the only audience an access token or authorize request may name.
    pub fn fhir_base(&self) -> &str {
        &self.fhir_base
    }

    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.issuer)
    }

    /// A snapshot read of the token-status view.
    pub fn status(&self) -> std::sync::RwLockReadGuard<'_, TokenStatus> {
        // A poisoned lock means a projection apply panicked mid-event; the view is still the
        // best knowledge there is, and refusing every request would not make it better.
        self.status.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the token-status view holds everything up to `position`.
    pub async fn wait_for(&self, position: Position) -> Result<(), reply::OAuthError> {
        self.status_handle
            .wait_for(position, Duration::from_secs(5))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "token-status view is behind");
                reply::OAuthError::server("the token-status view is not up to date")
            })
    }

    /// Re-reads the key ring twice a second while `smart` lives: a rotation from the CLI, or
    /// a retired key whose tokens have all expired, shows in the JWKS within half a second.
    pub fn watch_keys(smart: &Arc<Smart>) {
        let weak = Arc::downgrade(smart);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let Some(smart) = weak.upgrade() else { return };
                match smart.keys.refresh(now_ms()) {
                    Ok(true) => {
                        let keys = smart.keys.get();
                        tracing::info!(rsa_kid = %keys.rsa.kid, ec_kid = %keys.ec.kid, published = keys.jwks().keys.len(), "signing keys reloaded");
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "the key ring could not be re-read; keeping the keys in use")
                    }
                }
            }
        });
    }

    /// Takes one request from `client_id`'s allowance; `Err` holds the seconds to wait.
    pub fn rate_limit(&self, client_id: &str) -> Result<(), u64> {
        match self.limiter.check_key(&client_id.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                Err(wait.as_secs().max(1))
            }
        }
    }
}

/// SHA-256, hex: how codes and tokens appear in stream names and events.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// 256 random bits, base64url: codes, refresh tokens, client secrets, session ids.
pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub use crate::fhir::store::now_ms;

/// Every authorization-server route.
pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    // The authorization server owns `/auth/...` and the discovery documents. Other paths must
    // not reach its method filters: a POST-only route rejecting a GET elsewhere would turn the
    // server's 404 for an unknown path into a 405.
    let own_paths = warp::path::full()
        .and_then(|path: warp::path::FullPath| async move {
            let p = path.as_str();
            if p == "/auth" || p.starts_with("/auth/") || p.contains("/.well-known/") {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one();
    own_paths
        .and(
            discovery::routes(app.clone())
                .or(register::routes(app.clone()))
                .unify()
                .or(authorize::routes(app.clone()))
                .unify()
                .or(token::routes(app.clone()))
                .unify()
                .or(revoke::routes(app.clone()))
                .unify()
                .or(launch::routes(app.clone()))
                .unify()
                .or(grants::routes(app))
                .unify()
                .or(reply::preflight())
                .unify(),
        )
        .boxed()
}
