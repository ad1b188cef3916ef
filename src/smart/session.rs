//! Browser state between the pages of one authorization: the validated authorize request
//! waiting for login and consent, and login sessions (cookie `sphere_session`).
//!
//! Held in memory on the node that served the authorize request: it lives minutes, holds no
//! decision anyone else needs, and every decision it leads to (a code, a grant) is an event.

use std::collections::HashMap;
use std::sync::Mutex;

use sphere_domain::smart::events::LaunchContext;

use crate::smart::users::Principal;
use crate::smart::{now_ms, random_token};

const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
const SESSION_TTL_MS: i64 = 8 * 60 * 60 * 1000;
pub const SESSION_COOKIE: &str = "sphere_session";

/// A validated authorize request.
#[derive(Debug, Clone)]
pub struct Pending {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub state: String,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    /// From an EHR launch (`launch` parameter).
    pub launch: Option<LaunchContext>,
    /// Anti-CSRF token of the login and consent forms.
    pub csrf: String,
    /// The login session this authorization belongs to, once signed in.
    pub session: Option<String>,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    pub expires_ms: i64,
}

#[derive(Default)]
pub struct Sessions {
    pending: Mutex<HashMap<String, Pending>>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Stores `pending` and returns its id.
    pub fn begin(&self, mut pending: Pending) -> String {
        let now = now_ms();
        pending.expires_ms = now + PENDING_TTL_MS;
        let id = random_token();
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, p| p.expires_ms > now);
        map.insert(id.clone(), pending);
        id
    }

    pub fn pending(&self, id: &str) -> Option<Pending> {
        let map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|p| p.expires_ms > now_ms()).cloned()
    }

    pub fn update_pending(&self, id: &str, f: impl FnOnce(&mut Pending)) {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get_mut(id) {
            f(p);
        }
    }

    /// Removes the pending authorization: each is used for one decision only.
    pub fn finish(&self, id: &str) -> Option<Pending> {
        let mut map = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id).filter(|p| p.expires_ms > now_ms())
    }

    /// Starts a login session and returns its id (the cookie value).
    pub fn sign_in(&self, principal: Principal) -> String {
        let now = now_ms();
        let id = random_token();
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires_ms > now);
        map.insert(
            id.clone(),
            Session {
                principal,
                csrf: random_token(),
                expires_ms: now + SESSION_TTL_MS,
            },
        );
        id
    }

    pub fn session(&self, id: &str) -> Option<Session> {
        let map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|s| s.expires_ms > now_ms()).cloned()
    }
}

/// The session id from a `Cookie` header.
pub fn session_cookie(header: Option<&str>) -> Option<String> {
    header?.split(';').find_map(|part| {
        let (name, value) = part.trim().split_once('=')?;
        (name == SESSION_COOKIE).then(|| value.to_owned())
    })
}

/// The `Set-Cookie` value for a new session: not readable by scripts, HTTPS only, and not sent
/// on cross-site POSTs (a second layer under the forms' CSRF tokens).
pub fn set_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/auth; HttpOnly; Secure; SameSite=Lax; Max-Age=28800")
}

/// Constant-time comparison for CSRF tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
