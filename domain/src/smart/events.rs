//! The authorization server's events and the streams they live in (DESIGN.md "Streams").
//!
//! None of these carries a secret: client secrets and passwords appear only as argon2
//! hashes, codes and tokens only as SHA-256 hashes (hex), access tokens only by `jti`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const APP_REGISTERED: &str = "AppRegistered";
pub const APP_APPROVED: &str = "AppApproved";
pub const APP_SUSPENDED: &str = "AppSuspended";
pub const APP_SECRET_ROTATED: &str = "AppSecretRotated";
pub const USER_ADDED: &str = "UserAdded";
pub const CODE_ISSUED: &str = "AuthorizationCodeIssued";
pub const CODE_REDEEMED: &str = "AuthorizationCodeRedeemed";
pub const GRANT_CREATED: &str = "GrantCreated";
pub const ACCESS_TOKEN_ISSUED: &str = "AccessTokenIssued";
pub const REFRESH_TOKEN_ISSUED: &str = "RefreshTokenIssued";
pub const GRANT_REVOKED: &str = "GrantRevoked";
pub const LAUNCH_CREATED: &str = "LaunchContextCreated";
pub const ASSERTION_USED: &str = "ClientAssertionUsed";
pub const SIGNING_KEYS_ROTATED: &str = "SigningKeysRotated";

/// Stream categories of the authorization server.
pub const APP: &str = "app";
pub const USER: &str = "user";
pub const AUTHCODE: &str = "authcode";
pub const GRANT: &str = "grant";
pub const LAUNCH: &str = "launch";
pub const ASSERTION: &str = "assertion";
pub const SIGNING_KEYS: &str = "signingkeys";

pub fn app_stream(client_id: &str) -> String {
    format!("{APP}-{client_id}")
}
pub fn user_stream(username: &str) -> String {
    format!("{USER}-{username}")
}
pub fn authcode_stream(code_hash: &str) -> String {
    format!("{AUTHCODE}-{code_hash}")
}
pub fn grant_stream(grant_id: &str) -> String {
    format!("{GRANT}-{grant_id}")
}
pub fn launch_stream(launch_id: &str) -> String {
    format!("{LAUNCH}-{launch_id}")
}
pub fn assertion_stream(hash: &str) -> String {
    format!("{ASSERTION}-{hash}")
}
/// The server's signing-key rotations (public keys and kids only).
pub fn signing_keys_stream() -> String {
    format!("{SIGNING_KEYS}-server")
}

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// A public client (browser or native app): no secret, PKCE required.
    None,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "client_secret_basic" => Self::ClientSecretBasic,
            "client_secret_post" => Self::ClientSecretPost,
            "private_key_jwt" => Self::PrivateKeyJwt,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
    pub fn uses_secret(self) -> bool {
        matches!(self, Self::ClientSecretBasic | Self::ClientSecretPost)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRegistered {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub token_endpoint_auth_method: ClientAuthMethod,
    /// The scopes the app may ask for (space-separated).
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_uri: Option<String>,
    /// argon2 PHC string of the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Whether it may be used right away (operators may require approval).
    pub approved: bool,
    pub registered_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSecretRotated {
    pub secret_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAdded {
    pub username: String,
    pub password_hash: String,
    /// `Patient/123` or `Practitioner/9`.
    pub fhir_user: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LaunchContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fhir_context: Vec<Value>,
    #[serde(default)]
    pub need_patient_banner: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchCreated {
    pub launch_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub context: LaunchContext,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeIssued {
    pub client_id: String,
    pub username: String,
    pub fhir_user: String,
    pub redirect_uri: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_challenge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub context: LaunchContext,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeRedeemed {
    pub grant_id: String,
}

/// An authorization: what a user (or, for backend services, nobody) gave a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantCreated {
    pub grant_id: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    pub scope: String,
    pub context: LaunchContext,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessTokenIssued {
    pub jti: String,
    pub scope: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshTokenIssued {
    /// SHA-256 (hex) of the refresh token; it replaces the grant's previous one.
    pub token_hash: String,
    pub scope: String,
    pub expires_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRevoked {
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssertionUsed {
    pub client_id: String,
    pub expires_ms: i64,
}

/// `sphere keys rotate`: the new public keys, and the kids that stopped signing (they stay
/// published until the tokens they signed expire). The private keys stay in the data
/// directory; this event holds nothing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKeysRotated {
    pub rsa_kid: String,
    pub ec_kid: String,
    /// The new public keys (a JWKS).
    pub jwks: Value,
    pub retired_kids: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped_kids: Vec<String>,
    pub rotated_ms: i64,
}
