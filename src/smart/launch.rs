//! EHR launch: a practitioner (signed in, or by HTTP Basic for EHR integrations) creates a
//! launch context - patient, encounter, user - and gets the app's launch URL with `iss` and
//! `launch`. The context is the stream `launch-{id}` and lives five minutes.

use std::sync::Arc;

use base64::Engine;
use serde_json::json;
use sphere_domain::smart::events::{self as ev, LaunchContext, LaunchCreated};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use crate::eventlog::{ExpectedRevision, NewEvent};
use crate::smart::reply::{first, form_body, json_no_store, OAuthError};
use crate::smart::session::session_cookie;
use crate::smart::users::{Authenticator, Principal};
use crate::smart::{now_ms, random_token};

const LAUNCH_TTL_MS: i64 = 5 * 60 * 1000;

fn fhir_id_ok(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

async fn principal(
    app: &Arc<App>,
    authorization: Option<&str>,
    cookie: Option<&str>,
) -> Option<Principal> {
    if let Some(id) = session_cookie(cookie) {
        if let Some(s) = app.smart.sessions.session(&id) {
            return Some(s.principal);
        }
    }
    let encoded = authorization?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let (user, password) = (user.to_owned(), password.to_owned());
    let app = app.clone();
    tokio::task::spawn_blocking(move || app.smart.authenticate(&user, &password))
        .await
        .ok()
        .flatten()
}

async fn create(
    app: Arc<App>,
    pairs: Vec<(String, String)>,
    authorization: Option<String>,
    cookie: Option<String>,
) -> warp::reply::Response {
    let Some(principal) = principal(&app, authorization.as_deref(), cookie.as_deref()).await else {
        let mut e = OAuthError::invalid_client("sign in as a practitioner to launch apps");
        e.basic_challenge = true;
        return e.into_response();
    };
    if !principal.is_practitioner() {
        return OAuthError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "only practitioners launch apps",
        )
        .into_response();
    }
    let client_id = first(&pairs, "client_id").unwrap_or_default();
    let launch_uri = {
        let status = app.smart.status();
        match status.apps.get(client_id) {
            Some(a) if a.usable() => a.registration.launch_uri.clone(),
            _ => return OAuthError::invalid_request("unknown client_id").into_response(),
        }
    };
    let patient = first(&pairs, "patient").filter(|p| !p.is_empty());
    let encounter = first(&pairs, "encounter").filter(|p| !p.is_empty());
    if patient.is_some_and(|p| !fhir_id_ok(p)) || encounter.is_some_and(|e| !fhir_id_ok(e)) {
        return OAuthError::invalid_request("patient and encounter are FHIR ids").into_response();
    }
    let mut fhir_context = Vec::new();
    if let Some(e) = encounter {
        fhir_context.push(json!({"reference": format!("Encounter/{e}")}));
    }
    let launch_id = random_token();
    let created = LaunchCreated {
        launch_id: launch_id.clone(),
        user: Some(principal.username.clone()),
        context: LaunchContext {
            patient: patient.map(str::to_owned),
            encounter: encounter.map(str::to_owned),
            fhir_context,
            need_patient_banner: false,
        },
        expires_ms: now_ms() + LAUNCH_TTL_MS,
    };
    let event = match NewEvent::json(ev::LAUNCH_CREATED, &created) {
        Ok(e) => e,
        Err(e) => return OAuthError::server(e.to_string()).into_response(),
    };
    let position = match app
        .log
        .append(
            &ev::launch_stream(&launch_id),
            ExpectedRevision::NoStream,
            vec![event],
        )
        .await
    {
        Ok(r) => r.position,
        Err(e) => return OAuthError::from(e).into_response(),
    };
    if let Err(e) = app.smart.wait_for(position).await {
        return e.into_response();
    }
    let iss = app.smart.fhir_base().to_owned();
    let launch_url = launch_uri
        .and_then(|uri| url::Url::parse(&uri).ok())
        .map(|mut url| {
            url.query_pairs_mut()
                .append_pair("iss", &iss)
                .append_pair("launch", &launch_id);
            url.to_string()
        });
    json_no_store(
        &json!({"launch": launch_id, "iss": iss, "launch_url": launch_url}),
        StatusCode::CREATED,
    )
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    warp::post()
        .and(warp::path!("auth" / "launch"))
        .and(warp::any().map(move || app.clone()))
        .and(form_body())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("cookie"))
        .then(create)
        .boxed()
}
