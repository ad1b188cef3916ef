//! `POST /auth/token`: authorization_code (single use; a reused code revokes what it
//! issued), refresh_token (rotation, scope narrowing only) and client_credentials (SMART
//! Backend Services). Access tokens are ES384 JWTs named by `jti` in the token-status view;
//! refresh tokens are random and stored only as SHA-256 hashes.

use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sphere_domain::smart::events::{self as ev, CodeIssued, GrantCreated, LaunchContext};
use sphere_domain::smart::scope::{Context, Scope, ScopeSet};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use crate::eventlog::{
    Direction, EventLogError, ExpectedRevision, NewEvent, Position, StreamStart, StreamWrite,
};
use crate::smart::client_auth::{authenticate, Client, VerifiedSecrets};
use crate::smart::reply::{cors, form_body, json_no_store, single, OAuthError};
use crate::smart::{now_ms, random_token, sha256_hex, Smart};

/// Lifetime of an `online_access` refresh token.
const ONLINE_REFRESH_MS: i64 = 24 * 60 * 60 * 1000;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encounter: Option<String>,
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
}

/// A freshly signed access token.
struct Minted {
    token: String,
    jti: String,
    expires_ms: i64,
}

fn mint_access(smart: &Smart, grant: &GrantCreated, scope: &str) -> Result<Minted, OAuthError> {
    let now = now_ms();
    let exp = now / 1000 + smart.access_token_seconds as i64;
    let jti = uuid::Uuid::now_v7().simple().to_string();
    let claims = AccessClaims {
        iss: smart.issuer().to_owned(),
        sub: grant
            .username
            .clone()
            .unwrap_or_else(|| grant.client_id.clone()),
        aud: smart.fhir_base().to_owned(),
        exp,
        iat: now / 1000,
        jti: jti.clone(),
        client_id: grant.client_id.clone(),
        scope: scope.to_owned(),
        patient: grant.context.patient.clone(),
        encounter: grant.context.encounter.clone(),
        fhir_user: grant
            .fhir_user
            .as_ref()
            .map(|f| format!("{}/{f}", smart.fhir_base())),
    };
    // Access tokens are verified only by this server, so their algorithm is ours to pick:
    // ES384 with the P-384 key signs several times faster than RS256 with the RSA key, and
    // signing is most of the cost of a token issue. (id_tokens stay RS256, which OIDC and
    // SMART require clients to support.)
    let keys = smart.keys.get();
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some(keys.ec.kid.clone());
    header.typ = Some("at+jwt".into());
    let token = keys.ec.sign(&header, &claims).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        OAuthError::server("signing failed")
    })?;
    crate::audit::note(|n| {
        n.actor.user = grant.username.clone();
        n.actor.token_id = Some(jti.clone());
        if let Some(p) = &grant.context.patient {
            n.patient(p);
        }
    });
    Ok(Minted {
        token,
        jti,
        expires_ms: exp * 1000,
    })
}

fn mint_id_token(
    smart: &Smart,
    grant: &GrantCreated,
    nonce: Option<&str>,
) -> Result<String, OAuthError> {
    let now = now_ms() / 1000;
    let mut claims = json!({
        "iss": smart.issuer(),
        "sub": grant.username.clone().unwrap_or_default(),
        "aud": grant.client_id,
        "exp": now + smart.access_token_seconds as i64,
        "iat": now,
        "auth_time": now,
    });
    if let Some(f) = &grant.fhir_user {
        claims["fhirUser"] = json!(format!("{}/{f}", smart.fhir_base()));
    }
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let keys = smart.keys.get();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(keys.rsa.kid.clone());
    keys.rsa.sign(&header, &claims).map_err(|e| {
        tracing::error!(error = %e, "signing an id_token failed");
        OAuthError::server("signing failed")
    })
}

fn event<T: Serialize>(kind: &str, body: &T) -> Result<NewEvent, OAuthError> {
    NewEvent::json(kind, body).map_err(|e| OAuthError::server(e.to_string()))
}

/// The context fields of a token response (SMART App Launch 2.2.0 2.0.8 / 2.0.9).
fn context_fields(smart: &Smart, body: &mut Value, context: &LaunchContext) {
    if let Some(p) = &context.patient {
        body["patient"] = json!(p);
    }
    if let Some(e) = &context.encounter {
        body["encounter"] = json!(e);
    }
    if !context.fhir_context.is_empty() {
        body["fhirContext"] = json!(context.fhir_context);
    }
    body["need_patient_banner"] = json!(context.need_patient_banner);
    body["smart_style_url"] = json!(format!("{}/auth/smart-style.json", smart.issuer()));
}

/// Revokes `grant_ids` and waits until the token-status view holds the revocation.
pub async fn revoke_grants(
    app: &App,
    grant_ids: &[String],
    reason: &str,
) -> Result<(), OAuthError> {
    if grant_ids.is_empty() {
        return Ok(());
    }
    let mut writes = Vec::new();
    for id in grant_ids {
        writes.push(StreamWrite {
            stream: ev::grant_stream(id),
            expected: ExpectedRevision::StreamExists,
            events: vec![event(
                ev::GRANT_REVOKED,
                &ev::GrantRevoked {
                    reason: reason.to_owned(),
                },
            )?],
        });
    }
    let results = app.log.append_multi(writes).await?;
    if let Some(last) = results.iter().map(|r| r.position).max() {
        app.smart.wait_for(last).await?;
    }
    Ok(())
}

fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let shape_ok = (43..=128).contains(&verifier.len())
        && verifier
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
    let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    shape_ok && crate::smart::session::same(&digest, challenge)
}

/// A second exchange of a code: revoke what the first one issued (RFC 6749 10.5).
async fn code_reused(app: &App, stream: &str) -> OAuthError {
    if let Ok(events) = app
        .log
        .read_stream(stream, Direction::Forwards, StreamStart::Origin, 10)
        .await
    {
        let grants: Vec<String> = events
            .iter()
            .filter(|e| e.event_type == ev::CODE_REDEEMED)
            .filter_map(|e| e.json::<ev::CodeRedeemed>().ok())
            .map(|r| r.grant_id)
            .collect();
        if let Err(e) = revoke_grants(app, &grants, "authorization code reused").await {
            tracing::error!(error = %e, "revoking tokens of a reused code failed");
        }
    }
    OAuthError::invalid_grant("the authorization code was already used; its tokens are revoked")
}

async fn authorization_code(
    app: &App,
    client: &Client,
    pairs: &[(String, String)],
) -> Result<Value, OAuthError> {
    let smart = &app.smart;
    let code = single(pairs, "code")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("code is missing"))?;
    let stream = ev::authcode_stream(&sha256_hex(code));
    let events = app
        .log
        .read_stream(&stream, Direction::Forwards, StreamStart::Origin, 10)
        .await?;
    let issued: CodeIssued = events
        .first()
        .filter(|e| e.event_type == ev::CODE_ISSUED)
        .and_then(|e| e.json().ok())
        .ok_or_else(|| OAuthError::invalid_grant("the code is not valid"))?;
    if issued.client_id != client.client_id() {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if events.len() > 1 {
        return Err(code_reused(app, &stream).await);
    }
    if issued.expires_ms <= now_ms() {
        return Err(OAuthError::invalid_grant("the code has expired"));
    }
    if single(pairs, "redirect_uri").map_err(OAuthError::invalid_request)?
        != Some(issued.redirect_uri.as_str())
    {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = single(pairs, "code_verifier").map_err(OAuthError::invalid_request)?;
    match (&issued.code_challenge, verifier) {
        (Some(challenge), Some(v)) if verifier_matches(v, challenge) => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ))
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("code_verifier is missing")),
        // A verifier for a code issued without a challenge is a downgrade attempt.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "the authorization request had no code_challenge",
            ))
        }
        (None, None) => {}
    }
    let grant_id = uuid::Uuid::now_v7().simple().to_string();
    let grant = GrantCreated {
        grant_id: grant_id.clone(),
        client_id: issued.client_id.clone(),
        username: Some(issued.username.clone()),
        fhir_user: Some(issued.fhir_user.clone()),
        scope: issued.scope.clone(),
        context: issued.context.clone(),
        created_ms: now_ms(),
    };
    let scopes = ScopeSet::parse(&issued.scope);
    let access = mint_access(smart, &grant, &issued.scope)?;
    let mut grant_events = vec![
        event(ev::GRANT_CREATED, &grant)?,
        event(
            ev::ACCESS_TOKEN_ISSUED,
            &ev::AccessTokenIssued {
                jti: access.jti.clone(),
                scope: issued.scope.clone(),
                expires_ms: access.expires_ms,
            },
        )?,
    ];
    let refresh_ms = if scopes.contains(&Scope::OfflineAccess) {
        Some(smart.refresh_token_ms)
    } else if scopes.contains(&Scope::OnlineAccess) {
        Some(ONLINE_REFRESH_MS)
    } else {
        None
    };
    let refresh = refresh_ms.map(|_| random_token());
    if let (Some(token), Some(ms)) = (&refresh, refresh_ms) {
        grant_events.push(event(
            ev::REFRESH_TOKEN_ISSUED,
            &ev::RefreshTokenIssued {
                token_hash: sha256_hex(token),
                scope: issued.scope.clone(),
                expires_ms: now_ms() + ms,
            },
        )?);
    }
    let writes = vec![
        StreamWrite {
            stream: stream.clone(),
            expected: ExpectedRevision::Exact(0),
            events: vec![event(
                ev::CODE_REDEEMED,
                &ev::CodeRedeemed {
                    grant_id: grant_id.clone(),
                },
            )?],
        },
        StreamWrite {
            stream: ev::grant_stream(&grant_id),
            expected: ExpectedRevision::NoStream,
            events: grant_events,
        },
    ];
    let position = match app.log.append_multi(writes).await {
        Ok(results) => results
            .iter()
            .map(|r| r.position)
            .max()
            .unwrap_or(Position(0)),
        Err(EventLogError::WrongExpectedVersion { stream: s, .. }) if s == stream => {
            return Err(code_reused(app, &stream).await)
        }
        Err(e) => return Err(e.into()),
    };
    smart.wait_for(position).await?;
    let mut body = json!({
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": smart.access_token_seconds,
        "scope": issued.scope,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = json!(r);
    }
    if scopes.contains(&Scope::OpenId) {
        body["id_token"] = json!(mint_id_token(smart, &grant, issued.nonce.as_deref())?);
    }
    context_fields(smart, &mut body, &issued.context);
    Ok(body)
}

async fn refresh_token(
    app: &App,
    client: &Client,
    pairs: &[(String, String)],
) -> Result<Value, OAuthError> {
    let smart = &app.smart;
    let token = single(pairs, "refresh_token")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is missing"))?;
    let hash = sha256_hex(token);
    let grant = smart
        .status()
        .active_refresh(&hash, now_ms())
        .cloned()
        .ok_or_else(|| OAuthError::invalid_grant("the refresh token is not valid"))?;
    if grant.client_id != client.client_id() {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let (_, refresh_scope, refresh_expires) = grant
        .refresh
        .clone()
        .ok_or_else(|| OAuthError::invalid_grant("the refresh token is not valid"))?;
    let granted = ScopeSet::parse(&refresh_scope);
    let scope = match single(pairs, "scope").map_err(OAuthError::invalid_request)? {
        Some(asked) => {
            let asked = ScopeSet::parse(asked);
            let narrowed = asked.narrowed_to(&granted);
            if narrowed != asked {
                return Err(OAuthError::invalid_scope(
                    "a refresh may only narrow the granted scopes",
                ));
            }
            narrowed
        }
        None => granted.clone(),
    };
    let created = GrantCreated {
        grant_id: grant.grant_id.clone(),
        client_id: grant.client_id.clone(),
        username: grant.username.clone(),
        fhir_user: grant.fhir_user.clone(),
        scope: grant.scope.clone(),
        context: grant.context.clone(),
        created_ms: grant.created_ms,
    };
    let access = mint_access(smart, &created, &scope.to_string())?;
    let new_refresh = random_token();
    // offline_access slides forward with each use; online_access keeps its end.
    let expires_ms = if granted.contains(&Scope::OfflineAccess) {
        now_ms() + smart.refresh_token_ms
    } else {
        refresh_expires
    };
    let events = vec![
        event(
            ev::ACCESS_TOKEN_ISSUED,
            &ev::AccessTokenIssued {
                jti: access.jti.clone(),
                scope: scope.to_string(),
                expires_ms: access.expires_ms,
            },
        )?,
        event(
            ev::REFRESH_TOKEN_ISSUED,
            &ev::RefreshTokenIssued {
                token_hash: sha256_hex(&new_refresh),
                scope: refresh_scope.clone(),
                expires_ms,
            },
        )?,
    ];
    let result = match app
        .log
        .append(
            &ev::grant_stream(&grant.grant_id),
            ExpectedRevision::Exact(grant.revision),
            events,
        )
        .await
    {
        Ok(r) => r,
        Err(e) if e.is_wrong_expected_version() => {
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    smart.wait_for(result.position).await?;
    let mut body = json!({
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": smart.access_token_seconds,
        "scope": scope.to_string(),
        "refresh_token": new_refresh,
    });
    if scope.contains(&Scope::OpenId) {
        body["id_token"] = json!(mint_id_token(smart, &created, None)?);
    }
    context_fields(smart, &mut body, &grant.context);
    Ok(body)
}

async fn client_credentials(
    app: &App,
    client: &Client,
    pairs: &[(String, String)],
) -> Result<Value, OAuthError> {
    let smart = &app.smart;
    let Some((jti, assertion_exp)) = client.assertion.clone() else {
        return Err(OAuthError::unauthorized_client(
            "client_credentials requires private_key_jwt",
        ));
    };
    let registered = ScopeSet::parse(&client.app.registration.scope);
    let asked = match single(pairs, "scope").map_err(OAuthError::invalid_request)? {
        Some(s) => ScopeSet::parse(s),
        None => registered.clone(),
    };
    let scope = asked
        .narrowed_to(&registered)
        .retain(|_, s| matches!(s, Scope::Resource(r) if r.context == Context::System));
    if scope.is_empty() {
        return Err(OAuthError::invalid_scope(
            "no requested system/ scope is registered for this client",
        ));
    }
    let grant_id = uuid::Uuid::now_v7().simple().to_string();
    let grant = GrantCreated {
        grant_id: grant_id.clone(),
        client_id: client.client_id().to_owned(),
        username: None,
        fhir_user: None,
        scope: scope.to_string(),
        context: LaunchContext::default(),
        created_ms: now_ms(),
    };
    // A jti is spent once. Memory refuses a replay at once; the log (below) is the authority.
    if !smart
        .spent_assertions
        .spend(client.client_id(), &jti, assertion_exp, now_ms())
    {
        return Err(OAuthError::invalid_client(
            "the client_assertion jti was already used",
        ));
    }
    let access = match mint_access(smart, &grant, &grant.scope) {
        Ok(a) => a,
        Err(e) => {
            smart.spent_assertions.unspend(client.client_id(), &jti);
            return Err(e);
        }
    };
    let assertion_stream =
        ev::assertion_stream(&sha256_hex(&format!("{}\n{jti}", client.client_id())));
    let writes = vec![
        // A jti is spent once: a replayed assertion finds its stream already there.
        StreamWrite {
            stream: assertion_stream.clone(),
            expected: ExpectedRevision::NoStream,
            events: vec![event(
                ev::ASSERTION_USED,
                &ev::AssertionUsed {
                    client_id: client.client_id().to_owned(),
                    expires_ms: assertion_exp,
                },
            )?],
        },
        StreamWrite {
            stream: ev::grant_stream(&grant_id),
            expected: ExpectedRevision::NoStream,
            events: vec![
                event(ev::GRANT_CREATED, &grant)?,
                event(
                    ev::ACCESS_TOKEN_ISSUED,
                    &ev::AccessTokenIssued {
                        jti: access.jti.clone(),
                        scope: grant.scope.clone(),
                        expires_ms: access.expires_ms,
                    },
                )?,
            ],
        },
    ];
    let position = match app.log.append_multi(writes).await {
        Ok(results) => results
            .iter()
            .map(|r| r.position)
            .max()
            .unwrap_or(Position(0)),
        Err(EventLogError::WrongExpectedVersion { stream, .. }) if stream == assertion_stream => {
            return Err(OAuthError::invalid_client(
                "the client_assertion jti was already used",
            ))
        }
        Err(e) => {
            smart.spent_assertions.unspend(client.client_id(), &jti);
            return Err(e.into());
        }
    };
    smart.wait_for(position).await?;
    Ok(json!({
        "access_token": access.token,
        "token_type": "Bearer",
        "expires_in": smart.access_token_seconds,
        "scope": grant.scope,
    }))
}

async fn handle(
    app: &App,
    secrets: &VerifiedSecrets,
    pairs: &[(String, String)],
    authorization: Option<&str>,
) -> Result<Value, OAuthError> {
    let grant_type = single(pairs, "grant_type")
        .map_err(OAuthError::invalid_request)?
        .ok_or_else(|| OAuthError::invalid_request("grant_type is missing"))?;
    if !crate::smart::discovery::GRANT_TYPES.contains(&grant_type) {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type is not supported",
        ));
    }
    crate::audit::note(|n| {
        n.interaction("token");
        n.operation = Some(grant_type.to_owned());
    });
    let client = authenticate(&app.smart, secrets, pairs, authorization).await?;
    crate::audit::note(|n| n.actor.client_id = Some(client.client_id().to_owned()));
    app.smart
        .rate_limit(client.client_id())
        .map_err(OAuthError::too_many)?;
    if !client
        .app
        .registration
        .grant_types
        .iter()
        .any(|g| g == grant_type)
    {
        return Err(OAuthError::unauthorized_client(
            "the client is not registered for this grant_type",
        ));
    }
    match grant_type {
        "authorization_code" => authorization_code(app, &client, pairs).await,
        "refresh_token" => refresh_token(app, &client, pairs).await,
        _ => client_credentials(app, &client, pairs).await,
    }
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    warp::post()
        .and(warp::path!("auth" / "token"))
        .and(form_body())
        .and(warp::header::optional::<String>("authorization"))
        .then(move |pairs: Vec<(String, String)>, authorization: Option<String>| {
            let app = app.clone();
            async move {
                let reply = match handle(&app, &app.smart.secrets, &pairs, authorization.as_deref()).await {
                    Ok(body) => json_no_store(&body, StatusCode::OK),
                    Err(e) => {
                        tracing::info!(target: "sphere::auth", error = e.code, "token request refused");
                        e.into_response()
                    }
                };
                cors(reply)
            }
        })
        .boxed()
}
