//! `POST /auth/revoke` (RFC 7009) and `POST /auth/introspect` (RFC 7662 with the SMART
//! fields). A revocation is in the token-status view before the call returns, and it ends the
//! whole grant and every other grant of the same client and subject (their refresh tokens).

use std::sync::Arc;

use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use crate::smart::bearer::bearer_of;
use crate::smart::client_auth::authenticate;
use crate::smart::reply::{cors, first, form_body, json_no_store, OAuthError};
use crate::smart::token::revoke_grants;
use crate::smart::{now_ms, sha256_hex};

/// The grant id a token belongs to: an access token by its `jti`, a refresh token by hash.
fn grant_of(app: &App, token: &str) -> Option<String> {
    let smart = &app.smart;
    // Signature and audience are checked, expiry is not: an expired token may still be
    // revoked, which ends its grant's refresh token too.
    let keys = smart.keys.get();
    let jti = jsonwebtoken::decode_header(token)
        .ok()
        .and_then(|h| {
            keys.by_kid(h.kid.as_deref()?)
                .filter(|k| k.algorithm == h.alg)
        })
        .and_then(|key| {
            let mut v = jsonwebtoken::Validation::new(key.algorithm);
            v.set_audience(&[smart.fhir_base()]);
            v.validate_exp = false;
            v.set_required_spec_claims(&["aud"]);
            jsonwebtoken::decode::<crate::smart::token::AccessClaims>(token, &key.decoding, &v).ok()
        })
        .map(|d| d.claims.jti);
    let status = smart.status();
    match jti {
        Some(jti) => status.access.get(&jti).cloned(),
        None => status.refresh.get(&sha256_hex(token)).cloned(),
    }
}

async fn revoke(
    app: &App,
    pairs: &[(String, String)],
    authorization: Option<&str>,
) -> Result<(), OAuthError> {
    crate::audit::note(|n| {
        n.interaction("token-revoke");
    });
    let client = authenticate(&app.smart, &app.smart.secrets, pairs, authorization).await?;
    crate::audit::note(|n| n.actor.client_id = Some(client.client_id().to_owned()));
    let token =
        first(pairs, "token").ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let Some(grant_id) = grant_of(app, token) else {
        // RFC 7009 2.2: an unknown token is answered like a revoked one.
        return Ok(());
    };
    let ids: Vec<String> = {
        let status = app.smart.status();
        let Some(grant) = status.grants.get(&grant_id) else {
            return Ok(());
        };
        if grant.client_id != client.client_id() {
            // Not this client's token: say nothing about it (RFC 7009 2.1).
            return Ok(());
        }
        let mut ids = vec![grant.grant_id.clone()];
        if let Some(user) = &grant.username {
            ids.extend(
                status
                    .grants_of(&grant.client_id, user)
                    .into_iter()
                    .map(|g| g.grant_id.clone())
                    .filter(|id| *id != grant.grant_id),
            );
        }
        ids.retain(|id| status.grants.get(id).is_some_and(|g| !g.revoked));
        ids
    };
    revoke_grants(app, &ids, "revoked by the client").await
}

async fn introspect(
    app: &App,
    pairs: &[(String, String)],
    authorization: Option<&str>,
) -> Result<Value, OAuthError> {
    let smart = &app.smart;
    // Protected by client authentication or by any valid access token (SMART 2.2.0 allows
    // either).
    if let Some(bearer) = bearer_of(authorization) {
        smart
            .validate_bearer(Some(&format!("Bearer {bearer}")))
            .map_err(|_| OAuthError::invalid_client("the bearer token is not valid"))?;
    } else {
        authenticate(smart, &smart.secrets, pairs, authorization).await?;
    }
    let token =
        first(pairs, "token").ok_or_else(|| OAuthError::invalid_request("token is missing"))?;
    let inactive = json!({"active": false});
    if let Ok(claims) = smart.decode_access(token) {
        let status = smart.status();
        if status.active_access(&claims.jti).is_none() {
            return Ok(inactive);
        }
        let mut body = json!({
            "active": true,
            "token_type": "Bearer",
            "client_id": claims.client_id,
            "scope": claims.scope,
            "exp": claims.exp,
            "iat": claims.iat,
            "iss": claims.iss,
            "sub": claims.sub,
            "aud": claims.aud,
            "jti": claims.jti,
        });
        if let Some(p) = claims.patient {
            body["patient"] = json!(p);
        }
        if let Some(e) = claims.encounter {
            body["encounter"] = json!(e);
        }
        if let Some(f) = claims.fhir_user {
            body["fhirUser"] = json!(f);
        }
        return Ok(body);
    }
    let status = smart.status();
    match status.active_refresh(&sha256_hex(token), now_ms()) {
        Some(grant) => {
            let (_, scope, expires) = grant.refresh.clone().unwrap_or_default();
            Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": grant.client_id,
                "scope": scope,
                "exp": expires / 1000,
                "iss": smart.issuer(),
                "sub": grant.username.clone().unwrap_or_else(|| grant.client_id.clone()),
            }))
        }
        None => Ok(inactive),
    }
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let with_app = warp::any().map(move || app.clone());
    let auth = warp::header::optional::<String>("authorization");
    let revoke_route = warp::post()
        .and(warp::path!("auth" / "revoke"))
        .and(with_app.clone())
        .and(form_body())
        .and(auth)
        .then(|app: Arc<App>, pairs: Vec<(String, String)>, authorization: Option<String>| async move {
            cors(match revoke(&app, &pairs, authorization.as_deref()).await {
                Ok(()) => json_no_store(&json!({}), StatusCode::OK),
                Err(e) => e.into_response(),
            })
        });
    let introspect_route = warp::post()
        .and(warp::path!("auth" / "introspect"))
        .and(with_app)
        .and(form_body())
        .and(warp::header::optional::<String>("authorization"))
        .then(|app: Arc<App>, pairs: Vec<(String, String)>, authorization: Option<String>| async move {
            cors(match introspect(&app, &pairs, authorization.as_deref()).await {
                Ok(body) => json_no_store(&body, StatusCode::OK),
                Err(e) => e.into_response(),
            })
        });
    revoke_route.or(introspect_route).unify().boxed()
}
