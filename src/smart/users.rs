//! The user directory for the demo and small deployments: users linked to their Patient or
//! Practitioner, passwords as argon2 hashes in `user-{username}` streams.
//!
//! Login goes through [`Authenticator`], the seam where an external OpenID Connect provider
//! can take over later: the rest of the flow only needs a username and a `fhirUser`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sphere_domain::smart::events::{self as ev, UserAdded};

use crate::eventlog::{EventLog, EventLogError, ExpectedRevision, NewEvent, Position};
use crate::smart::Smart;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("username must be 1-64 letters, digits, '.', '_' or '@'")]
    BadUsername,
    #[error("password must be at least 8 characters")]
    WeakPassword,
    #[error("give exactly one of --patient or --practitioner (a FHIR id)")]
    BadLink,
    #[error("user {0} already exists")]
    Exists(String),
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error(transparent)]
    Log(#[from] EventLogError),
}

/// An argon2id PHC string for `secret` (passwords and client secrets).
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `secret` matches the PHC string `hash`.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Adds a user; `patient` xor `practitioner` names their FHIR resource id.
pub async fn add_user(
    log: &dyn EventLog,
    username: &str,
    password: &str,
    patient: Option<&str>,
    practitioner: Option<&str>,
) -> Result<Position, UserError> {
    if username.is_empty()
        || username.len() > 64
        || !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@'))
    {
        return Err(UserError::BadUsername);
    }
    if password.chars().count() < 8 {
        return Err(UserError::WeakPassword);
    }
    let fhir_user = match (patient, practitioner) {
        (Some(p), None) if sphere_domain::resource::is_valid_id(p) => format!("Patient/{p}"),
        (None, Some(p)) if sphere_domain::resource::is_valid_id(p) => format!("Practitioner/{p}"),
        _ => return Err(UserError::BadLink),
    };
    let password_hash = hash_secret(password).map_err(UserError::Hash)?;
    let event = NewEvent::json(
        ev::USER_ADDED,
        &UserAdded {
            username: username.to_owned(),
            password_hash,
            fhir_user,
        },
    )
    .map_err(|e| UserError::Hash(e.to_string()))?;
    match log
        .append(
            &ev::user_stream(username),
            ExpectedRevision::NoStream,
            vec![event],
        )
        .await
    {
        Ok(r) => Ok(r.position),
        Err(e) if e.is_wrong_expected_version() => Err(UserError::Exists(username.to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub username: String,
    /// `Patient/123` or `Practitioner/9`.
    pub fhir_user: String,
}

impl Principal {
    pub fn patient_id(&self) -> Option<&str> {
        self.fhir_user.strip_prefix("Patient/")
    }
    pub fn is_practitioner(&self) -> bool {
        self.fhir_user.starts_with("Practitioner/")
    }
}

/// Checks a username and password. The local directory is the only implementation today;
/// an external OpenID Connect provider would implement the same.
pub trait Authenticator {
    fn authenticate(&self, username: &str, password: &str) -> Option<Principal>;
}

/// A stand-in hash verified for unknown usernames so that timing does not tell which
/// usernames exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Vqg6yVbLNAiDN2e5hydTGmQ5xqMOePjZ4+J2ULPb5SI";

impl Authenticator for Smart {
    fn authenticate(&self, username: &str, password: &str) -> Option<Principal> {
        let user = self.status().users.get(username).cloned();
        match user {
            Some(u) if verify_secret(password, &u.password_hash) => Some(Principal {
                username: u.username,
                fhir_user: u.fhir_user,
            }),
            Some(_) => None,
            None => {
                let _ = verify_secret(password, DUMMY_HASH);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_against_their_own_hash() {
        let h = hash_secret("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret("correct horse", &h));
        assert!(!verify_secret("wrong horse", &h));
        assert!(!verify_secret("x", "not a hash"));
    }
}
