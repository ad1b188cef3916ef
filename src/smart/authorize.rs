//! The browser flow: `GET`/`POST /auth/authorize`, the login page (`/auth/login`) and the
//! consent page (`/auth/consent`), ending in a redirect to the app with a single-use code.
//!
//! Errors found before the client and redirect URI are trusted are shown on a page (never
//! redirected: that would be an open redirect); after that they go back to the app per
//! RFC 6749 4.1.2.1.

use std::sync::Arc;

use sphere_domain::smart::events::{self as ev, CodeIssued};
use sphere_domain::smart::scope::{Scope, ScopeSet};
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::Filter;

use crate::app::App;
use crate::eventlog::{ExpectedRevision, NewEvent};
use crate::smart::reply::{first, form_body, html, see_other, single};
use crate::smart::session::{same, session_cookie, set_cookie, Pending};
use crate::smart::users::{Authenticator, Principal};
use crate::smart::{now_ms, pages, random_token, sha256_hex, Smart};

/// How long a code may wait to be exchanged.
const CODE_TTL_MS: i64 = 60_000;

enum Failure {
    /// Shown to the user; the redirect URI is not trusted.
    Page(String),
    /// Sent back to the app.
    Redirect {
        redirect_uri: String,
        error: &'static str,
        description: String,
        state: Option<String>,
    },
}

fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            url.to_string()
        }
        Err(_) => redirect_uri.to_owned(),
    }
}

fn fail(f: Failure) -> warp::reply::Response {
    match f {
        Failure::Page(message) => html(StatusCode::BAD_REQUEST, pages::error_page(&message)),
        Failure::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(s) = &state {
                params.push(("state", s.as_str()));
            }
            see_other(&redirect_with(&redirect_uri, &params))
        }
    }
}

/// Checks an authorize request (RFC 6749 4.1.1, SMART App Launch 2.2.0 2.0.5).
fn validate(smart: &Smart, pairs: &[(String, String)]) -> Result<Pending, Failure> {
    let page = |m: &str| Failure::Page(m.to_owned());
    let client_id = single(pairs, "client_id")
        .map_err(Failure::Page)?
        .ok_or_else(|| page("The request names no app (client_id is missing)."))?;
    let app = smart
        .status()
        .apps
        .get(client_id)
        .cloned()
        .ok_or_else(|| page("The app is not registered here."))?;
    if !app.usable() {
        return Err(page("The app is not approved or has been suspended."));
    }
    let registered = &app.registration.redirect_uris;
    let redirect_uri = match single(pairs, "redirect_uri").map_err(Failure::Page)? {
        Some(uri) if registered.iter().any(|r| r == uri) => uri.to_owned(),
        Some(_) => return Err(page("The redirect_uri is not one the app registered.")),
        None if registered.len() == 1 => registered[0].clone(),
        None => return Err(page("The request has no redirect_uri.")),
    };
    let state = single(pairs, "state").ok().flatten().map(str::to_owned);
    let redirect = |error: &'static str, description: &str| Failure::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description: description.to_owned(),
        state: state.clone(),
    };
    for key in [
        "response_type",
        "scope",
        "aud",
        "state",
        "code_challenge",
        "code_challenge_method",
        "launch",
        "nonce",
    ] {
        if let Err(m) = single(pairs, key) {
            return Err(redirect("invalid_request", &m));
        }
    }
    match first(pairs, "response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(redirect(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => return Err(redirect("invalid_request", "response_type is missing")),
    }
    if !app
        .registration
        .grant_types
        .iter()
        .any(|g| g == "authorization_code")
    {
        return Err(redirect(
            "unauthorized_client",
            "the app is not registered for authorization_code",
        ));
    }
    let Some(state) = state.clone() else {
        return Err(redirect("invalid_request", "state is missing"));
    };
    // The audience must be this server's FHIR base, or no code is issued (SMART 2.0.5):
    // otherwise a malicious resource server could collect tokens meant for us.
    let aud = first(pairs, "aud").unwrap_or_default();
    if aud.trim_end_matches('/') != smart.fhir_base() {
        return Err(redirect(
            "invalid_request",
            "aud is not this server's FHIR base URL",
        ));
    }
    let challenge = first(pairs, "code_challenge").filter(|c| !c.is_empty());
    let method = first(pairs, "code_challenge_method");
    let code_challenge = match (challenge, method) {
        (Some(c), Some("S256")) => {
            if c.len() != 43
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                return Err(redirect(
                    "invalid_request",
                    "code_challenge is not a base64url SHA-256",
                ));
            }
            Some(c.to_owned())
        }
        (Some(_), _) | (None, Some(_)) => return Err(redirect(
            "invalid_request",
            "PKCE needs code_challenge with code_challenge_method=S256 (plain is not supported)",
        )),
        (None, None) => None,
    };
    let public = app.registration.token_endpoint_auth_method == ev::ClientAuthMethod::None;
    if public && code_challenge.is_none() {
        return Err(redirect(
            "invalid_request",
            "public clients must use PKCE (S256)",
        ));
    }
    let registered_scopes = ScopeSet::parse(&app.registration.scope);
    let asked = ScopeSet::parse(first(pairs, "scope").unwrap_or_default());
    let scope = asked.narrowed_to(&registered_scopes);
    if scope.is_empty() {
        return Err(redirect(
            "invalid_scope",
            "none of the requested scopes is registered for this app",
        ));
    }
    let launch = match first(pairs, "launch").filter(|l| !l.is_empty()) {
        Some(id) => {
            let status = smart.status();
            let launch = status
                .launches
                .get(id)
                .filter(|l| l.expires_ms > now_ms())
                .ok_or_else(|| redirect("invalid_request", "the launch is unknown or expired"))?;
            Some(launch.context.clone())
        }
        None => None,
    };
    Ok(Pending {
        client_id: client_id.to_owned(),
        client_name: app.registration.client_name.clone(),
        redirect_uri,
        state,
        scope: scope.to_string(),
        code_challenge,
        nonce: first(pairs, "nonce").map(str::to_owned),
        launch,
        csrf: random_token(),
        session: None,
        expires_ms: 0,
    })
}

/// The next page for a pending authorization: consent if signed in, else login.
fn next_page(
    smart: &Smart,
    txn: &str,
    pending: &Pending,
    cookie: Option<&str>,
) -> warp::reply::Response {
    if let Some(session_id) = session_cookie(cookie) {
        if let Some(session) = smart.sessions.session(&session_id) {
            smart
                .sessions
                .update_pending(txn, |p| p.session = Some(session_id.clone()));
            return consent_page(smart, txn, pending, &session.principal);
        }
    }
    html(
        StatusCode::OK,
        pages::login(Some(&pending.client_name), txn, &pending.csrf, None),
    )
}

fn needs_patient_pick(pending: &Pending, principal: &Principal) -> bool {
    let scopes = ScopeSet::parse(&pending.scope);
    principal.is_practitioner()
        && scopes.contains(&Scope::LaunchPatient)
        && pending
            .launch
            .as_ref()
            .and_then(|l| l.patient.as_ref())
            .is_none()
}

fn consent_page(
    smart: &Smart,
    txn: &str,
    pending: &Pending,
    principal: &Principal,
) -> warp::reply::Response {
    let known: Vec<String>;
    let pick = if needs_patient_pick(pending, principal) {
        let status = smart.status();
        let mut ids: Vec<String> = status
            .users
            .values()
            .filter_map(|u| u.fhir_user.strip_prefix("Patient/").map(str::to_owned))
            .collect();
        ids.sort();
        known = ids;
        Some(known.as_slice())
    } else {
        None
    };
    html(
        StatusCode::OK,
        pages::consent(
            &pending.client_name,
            &principal.username,
            &ScopeSet::parse(&pending.scope),
            txn,
            &pending.csrf,
            pick,
        ),
    )
}

async fn authorize(
    app: Arc<App>,
    pairs: Vec<(String, String)>,
    cookie: Option<String>,
) -> warp::reply::Response {
    let smart = &app.smart;
    match validate(smart, &pairs) {
        Err(f) => fail(f),
        Ok(pending) => {
            if let Err(wait) = smart.rate_limit(&pending.client_id) {
                return crate::smart::reply::OAuthError::too_many(wait).into_response();
            }
            let txn = smart.sessions.begin(pending.clone());
            next_page(smart, &txn, &pending, cookie.as_deref())
        }
    }
}

async fn login(
    app: Arc<App>,
    pairs: Vec<(String, String)>,
    peer: Option<crate::http::server::PeerAddr>,
) -> warp::reply::Response {
    let smart = &app.smart;
    let address = peer.map(|p| p.0.ip());
    let txn = first(&pairs, "txn").unwrap_or_default().to_owned();
    let csrf = first(&pairs, "csrf").unwrap_or_default();
    let username = first(&pairs, "username").unwrap_or_default();
    let password = first(&pairs, "password").unwrap_or_default();
    crate::audit::note(|n| {
        n.interaction("login").actor.user = Some(username.chars().take(128).collect());
    });
    // The grants page signs in without an authorization in progress.
    let pending = if txn.is_empty() {
        None
    } else {
        match smart.sessions.pending(&txn) {
            Some(p) if same(csrf, &p.csrf) => Some(p),
            _ => return html(StatusCode::BAD_REQUEST, pages::error_page("This sign-in form has expired or was not issued by this server. Start again from the app.")),
        }
    };
    let retry_page = |seconds: u64| {
        let words = crate::smart::login_throttle::wait_words(seconds);
        let mut response = html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(
                pending.as_ref().map(|p| p.client_name.as_str()),
                &txn,
                csrf,
                Some(&format!(
                    "Too many failed sign-ins. Sign-in is locked for this account; try again in {words}."
                )),
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert("retry-after", v);
        }
        response
    };
    // A locked-out username (or address) is refused before the password is even checked.
    if let Err(seconds) = smart.logins.check(username, address, now_ms()) {
        tracing::info!(target: "sphere::auth", "sign-in refused: locked out after failed attempts");
        return retry_page(seconds);
    }
    // argon2 is deliberately slow: keep it off the async workers.
    let principal = {
        let app = app.clone();
        let (u, p) = (username.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || app.smart.authenticate(&u, &p))
            .await
            .ok()
            .flatten()
    };
    let Some(principal) = principal else {
        tracing::info!(target: "sphere::auth", "failed sign-in");
        if let Err(seconds) = smart.logins.failed(username, address, now_ms()) {
            tracing::warn!(target: "sphere::auth", "sign-in locked out after repeated failures");
            return retry_page(seconds);
        }
        return html(
            StatusCode::UNAUTHORIZED,
            pages::login(
                pending.as_ref().map(|p| p.client_name.as_str()),
                &txn,
                csrf,
                Some("The username or password is not right."),
            ),
        );
    };
    smart.logins.succeeded(username);
    let session_id = smart.sessions.sign_in(principal);
    let location = match &pending {
        Some(_) => {
            smart
                .sessions
                .update_pending(&txn, |p| p.session = Some(session_id.clone()));
            format!("/auth/consent?txn={}", urlencode(&txn))
        }
        None => "/auth/grants".to_owned(),
    };
    let mut response = see_other(&location);
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&session_id)) {
        response.headers_mut().insert("set-cookie", v);
    }
    response
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The pending authorization and principal for `txn`, if the browser's session owns it.
fn owned(smart: &Smart, txn: &str, cookie: Option<&str>) -> Option<(Pending, Principal)> {
    let pending = smart.sessions.pending(txn)?;
    let session_id = session_cookie(cookie)?;
    if pending.session.as_deref() != Some(session_id.as_str()) {
        return None;
    }
    let session = smart.sessions.session(&session_id)?;
    Some((pending, session.principal))
}

async fn consent_get(
    app: Arc<App>,
    query: Vec<(String, String)>,
    cookie: Option<String>,
) -> warp::reply::Response {
    let txn = first(&query, "txn").unwrap_or_default();
    match owned(&app.smart, txn, cookie.as_deref()) {
        Some((pending, principal)) => consent_page(&app.smart, txn, &pending, &principal),
        None => html(
            StatusCode::BAD_REQUEST,
            pages::error_page("This authorization has expired. Start again from the app."),
        ),
    }
}

async fn consent_post(
    app: Arc<App>,
    pairs: Vec<(String, String)>,
    cookie: Option<String>,
) -> warp::reply::Response {
    let smart = &app.smart;
    let txn = first(&pairs, "txn").unwrap_or_default();
    let csrf = first(&pairs, "csrf").unwrap_or_default();
    let Some((pending, principal)) = owned(smart, txn, cookie.as_deref()) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error_page("This authorization has expired. Start again from the app."),
        );
    };
    // The CSRF token proves the form came from the page this server rendered for this
    // browser; without it another site could post an "allow" in the user's name.
    if !same(csrf, &pending.csrf) {
        return html(
            StatusCode::FORBIDDEN,
            pages::error_page(
                "The consent form was not issued by this server (CSRF check failed).",
            ),
        );
    }
    let Some(pending) = smart.sessions.finish(txn) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::error_page("This authorization was already decided."),
        );
    };
    let back = |error: &'static str, description: &str| {
        fail(Failure::Redirect {
            redirect_uri: pending.redirect_uri.clone(),
            error,
            description: description.to_owned(),
            state: Some(pending.state.clone()),
        })
    };
    if first(&pairs, "decision") != Some("allow") {
        return back("access_denied", "the user denied access");
    }
    let requested = ScopeSet::parse(&pending.scope);
    let ticked: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    // Only what was asked for (or a category-limited part of it) can be granted.
    let granted = ScopeSet::parse(&ticked.join(" ")).narrowed_to(&requested);
    if granted.resource_scopes().next().is_none() && !granted.contains(&Scope::OpenId) {
        return back("access_denied", "no permission was granted");
    }
    let mut context = pending.launch.clone().unwrap_or_default();
    if granted.contains(&Scope::LaunchPatient) && context.patient.is_none() {
        context.patient = match principal.patient_id() {
            Some(p) => Some(p.to_owned()),
            None => match first(&pairs, "patient")
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                Some(p)
                    if p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                        && p.len() <= 64 =>
                {
                    Some(p.to_owned())
                }
                _ => return back("invalid_request", "a patient must be chosen"),
            },
        };
        context.need_patient_banner = true;
    }
    if context.patient.is_none()
        && granted
            .resource_scopes()
            .any(|r| r.context == sphere_domain::smart::scope::Context::Patient)
    {
        context.patient = principal.patient_id().map(str::to_owned);
    }
    let code = random_token();
    let issued = CodeIssued {
        client_id: pending.client_id.clone(),
        username: principal.username.clone(),
        fhir_user: principal.fhir_user.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        scope: granted.to_string(),
        code_challenge: pending.code_challenge.clone(),
        nonce: pending.nonce.clone(),
        context,
        expires_ms: now_ms() + CODE_TTL_MS,
    };
    let event = match NewEvent::json(ev::CODE_ISSUED, &issued) {
        Ok(e) => e,
        Err(_) => return back("server_error", "the code could not be issued"),
    };
    if let Err(e) = app
        .log
        .append(
            &ev::authcode_stream(&sha256_hex(&code)),
            ExpectedRevision::NoStream,
            vec![event],
        )
        .await
    {
        tracing::error!(error = %e, "storing an authorization code failed");
        return back("server_error", "the code could not be issued");
    }
    see_other(&redirect_with(
        &pending.redirect_uri,
        &[("code", &code), ("state", &pending.state)],
    ))
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let with_app = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let cookie = warp::header::optional::<String>("cookie");
    let query = warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .map(|q: String| crate::smart::reply::form_pairs(q.as_bytes()));
    let get = warp::get()
        .and(warp::path!("auth" / "authorize"))
        .and(with_app.clone())
        .and(query)
        .and(cookie)
        .then(authorize);
    let post = warp::post()
        .and(warp::path!("auth" / "authorize"))
        .and(with_app.clone())
        .and(form_body())
        .and(cookie)
        .then(authorize);
    let login = warp::post()
        .and(warp::path!("auth" / "login"))
        .and(with_app.clone())
        .and(form_body())
        .and(warp::ext::optional::<crate::http::server::PeerAddr>())
        .then(login);
    let consent_get = warp::get()
        .and(warp::path!("auth" / "consent"))
        .and(with_app.clone())
        .and(query)
        .and(cookie)
        .then(consent_get);
    let consent_post = warp::post()
        .and(warp::path!("auth" / "consent"))
        .and(with_app)
        .and(form_body())
        .and(cookie)
        .then(consent_post);
    get.or(post)
        .unify()
        .or(login)
        .unify()
        .or(consent_get)
        .unify()
        .or(consent_post)
        .unify()
        .boxed()
}
