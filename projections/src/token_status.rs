//! The token-status view: registered apps, users, launch contexts, grants, live access-token
//! ids and refresh-token hashes, and revocations - everything the authorization server and
//! the FHIR API's bearer check look up on a request.
//!
//! In memory only, rebuilt from the log at every start (it is small, and a stale on-disk copy
//! of a revocation list is worse than a replay). Queries see a snapshot published at each
//! commit, so the revocation endpoint can wait for the commit that holds its revocation.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use sphere_domain::envelope::{EventFilter, Position, RecordedEvent};
use sphere_domain::smart::events::{self as ev, AppRegistered, LaunchContext};

use crate::{Projection, ProjectionError};

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub registration: AppRegistered,
    pub approved: bool,
    pub suspended: bool,
    pub secret_hash: Option<String>,
}

impl App {
    pub fn usable(&self) -> bool {
        self.approved && !self.suspended
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub fhir_user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub user: Option<String>,
    pub context: LaunchContext,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub grant_id: String,
    pub client_id: String,
    pub username: Option<String>,
    pub fhir_user: Option<String>,
    pub scope: String,
    pub context: LaunchContext,
    pub created_ms: i64,
    pub revoked: bool,
    /// Revision of the grant's stream after its last event: refresh-token rotation appends
    /// with this as the expected revision, so a token used twice concurrently rotates once.
    pub revision: u64,
    /// The grant's current refresh token (hash, scope, expiry); rotation replaces it.
    pub refresh: Option<(String, String, i64)>,
    pub access_tokens: Vec<String>,
}

/// The view queries read.
#[derive(Debug, Clone, Default)]
pub struct TokenStatus {
    pub checkpoint: Option<Position>,
    pub apps: HashMap<String, App>,
    pub users: HashMap<String, User>,
    pub launches: HashMap<String, Launch>,
    pub grants: HashMap<String, Grant>,
    /// jti -> grant id, for every access token ever issued (revocation is on the grant).
    pub access: HashMap<String, String>,
    /// refresh-token hash -> grant id, current tokens only.
    pub refresh: HashMap<String, String>,
    /// Grants by (client, user) for "revoke the refresh tokens of the same client and subject".
    pub by_subject: HashMap<(String, String), HashSet<String>>,
}

impl TokenStatus {
    /// The grant of a live (issued, not revoked) access token.
    pub fn active_access(&self, jti: &str) -> Option<&Grant> {
        let grant = self.grants.get(self.access.get(jti)?)?;
        (!grant.revoked).then_some(grant)
    }

    /// The grant of a current, unrevoked, unexpired refresh token.
    pub fn active_refresh(&self, hash: &str, now_ms: i64) -> Option<&Grant> {
        let grant = self.grants.get(self.refresh.get(hash)?)?;
        let (current, _, expires) = grant.refresh.as_ref()?;
        (!grant.revoked && current == hash && *expires > now_ms).then_some(grant)
    }

    /// Every unrevoked grant of `client` for `username`.
    pub fn grants_of(&self, client_id: &str, username: &str) -> Vec<&Grant> {
        self.by_subject
            .get(&(client_id.to_owned(), username.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.grants.get(id))
            .filter(|g| !g.revoked)
            .collect()
    }

    /// Every unrevoked grant a user gave, for the grants page.
    pub fn grants_by_user(&self, username: &str) -> Vec<&Grant> {
        let mut grants: Vec<&Grant> = self
            .grants
            .values()
            .filter(|g| !g.revoked && g.username.as_deref() == Some(username))
            .collect();
        grants.sort_by_key(|g| g.created_ms);
        grants
    }

    /// Folds one event into the view (the CLI folds streams it reads itself).
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let bad = |e: serde_json::Error| ProjectionError::BadEvent {
            position: event.position,
            message: e.to_string(),
        };
        let id = event.stream_id().to_owned();
        match (event.category(), event.event_type.as_str()) {
            (ev::APP, ev::APP_REGISTERED) => {
                let r: AppRegistered = event.json().map_err(bad)?;
                self.apps.insert(
                    r.client_id.clone(),
                    App {
                        approved: r.approved,
                        suspended: false,
                        secret_hash: r.secret_hash.clone(),
                        registration: r,
                    },
                );
            }
            (ev::APP, ev::APP_APPROVED) => {
                if let Some(app) = self.apps.get_mut(&id) {
                    app.approved = true;
                    app.suspended = false;
                }
            }
            (ev::APP, ev::APP_SUSPENDED) => {
                if let Some(app) = self.apps.get_mut(&id) {
                    app.suspended = true;
                }
            }
            (ev::APP, ev::APP_SECRET_ROTATED) => {
                let r: ev::AppSecretRotated = event.json().map_err(bad)?;
                if let Some(app) = self.apps.get_mut(&id) {
                    app.secret_hash = Some(r.secret_hash);
                }
            }
            (ev::USER, ev::USER_ADDED) => {
                let u: ev::UserAdded = event.json().map_err(bad)?;
                self.users.insert(
                    u.username.clone(),
                    User {
                        username: u.username,
                        password_hash: u.password_hash,
                        fhir_user: u.fhir_user,
                    },
                );
            }
            (ev::LAUNCH, ev::LAUNCH_CREATED) => {
                let l: ev::LaunchCreated = event.json().map_err(bad)?;
                self.launches.insert(
                    l.launch_id,
                    Launch {
                        user: l.user,
                        context: l.context,
                        expires_ms: l.expires_ms,
                    },
                );
            }
            (ev::GRANT, ev::GRANT_CREATED) => {
                let g: ev::GrantCreated = event.json().map_err(bad)?;
                if let Some(user) = &g.username {
                    self.by_subject
                        .entry((g.client_id.clone(), user.clone()))
                        .or_default()
                        .insert(g.grant_id.clone());
                }
                self.grants.insert(
                    g.grant_id.clone(),
                    Grant {
                        grant_id: g.grant_id,
                        client_id: g.client_id,
                        username: g.username,
                        fhir_user: g.fhir_user,
                        scope: g.scope,
                        context: g.context,
                        created_ms: g.created_ms,
                        revoked: false,
                        revision: event.revision,
                        refresh: None,
                        access_tokens: Vec::new(),
                    },
                );
            }
            (ev::GRANT, ev::ACCESS_TOKEN_ISSUED) => {
                let t: ev::AccessTokenIssued = event.json().map_err(bad)?;
                if let Some(grant) = self.grants.get_mut(&id) {
                    grant.access_tokens.push(t.jti.clone());
                    self.access.insert(t.jti, id.clone());
                }
            }
            (ev::GRANT, ev::REFRESH_TOKEN_ISSUED) => {
                let t: ev::RefreshTokenIssued = event.json().map_err(bad)?;
                if let Some(grant) = self.grants.get_mut(&id) {
                    if let Some((old, _, _)) = grant.refresh.take() {
                        self.refresh.remove(&old);
                    }
                    self.refresh.insert(t.token_hash.clone(), id.clone());
                    grant.refresh = Some((t.token_hash, t.scope, t.expires_ms));
                }
            }
            (ev::GRANT, ev::GRANT_REVOKED) => {
                if let Some(grant) = self.grants.get_mut(&id) {
                    grant.revoked = true;
                    if let Some((old, _, _)) = grant.refresh.take() {
                        self.refresh.remove(&old);
                    }
                }
            }
            _ => {}
        }
        if event.category() == ev::GRANT {
            if let Some(grant) = self.grants.get_mut(&id) {
                grant.revision = event.revision;
            }
        }
        Ok(())
    }
}

/// The projection; [`TokenStatusProjection::view`] hands out the shared read handle.
///
/// Events are applied straight into the shared view: seeing an issuance or a revocation a
/// moment before its batch commits is harmless, and copying the view per commit would cost
/// time proportional to every token ever issued.
pub struct TokenStatusProjection {
    view: Arc<RwLock<TokenStatus>>,
}

impl Default for TokenStatusProjection {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenStatusProjection {
    pub const NAME: &'static str = "token-status";

    pub fn new() -> Self {
        Self {
            view: Arc::new(RwLock::new(TokenStatus::default())),
        }
    }

    pub fn view(&self) -> Arc<RwLock<TokenStatus>> {
        self.view.clone()
    }
}

fn poisoned() -> ProjectionError {
    ProjectionError::Storage("token-status view lock poisoned".into())
}

const CATEGORIES: &[&str] = &[ev::APP, ev::USER, ev::LAUNCH, ev::GRANT];

impl Projection for TokenStatusProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// Always from the start: the view lives in memory only.
    fn checkpoint(&self) -> Option<Position> {
        None
    }

    fn filter(&self) -> EventFilter {
        EventFilter::categories(CATEGORIES.iter().copied())
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        self.view.write().map_err(|_| poisoned())?.apply(event)
    }

    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        self.view.write().map_err(|_| poisoned())?.checkpoint = Some(position);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ProjectionError> {
        *self.view.write().map_err(|_| poisoned())? = TokenStatus::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphere_domain::envelope::EventMetadata;

    fn event(position: u64, stream: &str, kind: &str, body: serde_json::Value) -> RecordedEvent {
        RecordedEvent {
            position: Position(position),
            stream: stream.into(),
            revision: 0,
            event_id: uuid::Uuid::new_v4(),
            event_type: kind.into(),
            data: bytes::Bytes::from(serde_json::to_vec(&body).unwrap()),
            metadata: EventMetadata::default(),
        }
    }

    #[test]
    fn revoking_a_grant_ends_its_access_and_refresh_tokens() {
        let mut p = TokenStatusProjection::new();
        let view = p.view();
        p.apply(&event(
            1,
            "grant-g1",
            ev::GRANT_CREATED,
            serde_json::json!({
                "grant_id": "g1", "client_id": "c", "username": "u", "scope": "openid",
                "context": {}, "created_ms": 1
            }),
        ))
        .unwrap();
        p.apply(&event(
            2,
            "grant-g1",
            ev::ACCESS_TOKEN_ISSUED,
            serde_json::json!({"jti": "j1", "scope": "openid", "expires_ms": 10}),
        ))
        .unwrap();
        p.apply(&event(
            3,
            "grant-g1",
            ev::REFRESH_TOKEN_ISSUED,
            serde_json::json!({"token_hash": "h1", "scope": "openid", "expires_ms": 100}),
        ))
        .unwrap();
        p.commit(Position(3)).unwrap();
        {
            let v = view.read().unwrap();
            assert!(v.active_access("j1").is_some());
            assert!(v.active_refresh("h1", 50).is_some());
            assert!(v.active_refresh("h1", 150).is_none());
            assert_eq!(v.grants_of("c", "u").len(), 1);
        }
        p.apply(&event(
            4,
            "grant-g1",
            ev::REFRESH_TOKEN_ISSUED,
            serde_json::json!({"token_hash": "h2", "scope": "openid", "expires_ms": 100}),
        ))
        .unwrap();
        assert!(
            view.read().unwrap().active_refresh("h1", 50).is_none(),
            "rotated"
        );
        p.apply(&event(
            5,
            "grant-g1",
            ev::GRANT_REVOKED,
            serde_json::json!({"reason": "user"}),
        ))
        .unwrap();
        p.commit(Position(5)).unwrap();
        let v = view.read().unwrap();
        assert!(v.active_access("j1").is_none());
        assert!(v.active_refresh("h2", 50).is_none());
        assert!(v.grants_of("c", "u").is_empty());
    }
}
