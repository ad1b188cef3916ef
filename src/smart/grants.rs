//! `/auth/grants`: the page where a signed-in user sees the apps they authorized and revokes
//! them.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use crate::smart::pages::{self, GrantRow};
use crate::smart::reply::{first, form_body, html, see_other};
use crate::smart::session::{same, session_cookie};
use crate::smart::token::revoke_grants;

async fn show(app: Arc<App>, cookie: Option<String>) -> warp::reply::Response {
    let Some(session) =
        session_cookie(cookie.as_deref()).and_then(|id| app.smart.sessions.session(&id))
    else {
        return html(StatusCode::OK, pages::login(None, "", "", None));
    };
    let rows: Vec<GrantRow> = {
        let status = app.smart.status();
        status
            .grants_by_user(&session.principal.username)
            .into_iter()
            .map(|g| GrantRow {
                grant_id: g.grant_id.clone(),
                client_name: status
                    .apps
                    .get(&g.client_id)
                    .map(|a| a.registration.client_name.clone())
                    .unwrap_or_else(|| g.client_id.clone()),
                scope: g.scope.clone(),
                created: crate::fhir::store::instant(g.created_ms),
            })
            .collect()
    };
    html(
        StatusCode::OK,
        pages::grants(&session.principal.username, &rows, &session.csrf),
    )
}

async fn revoke(
    app: Arc<App>,
    pairs: Vec<(String, String)>,
    cookie: Option<String>,
) -> warp::reply::Response {
    let Some(session) =
        session_cookie(cookie.as_deref()).and_then(|id| app.smart.sessions.session(&id))
    else {
        return html(
            StatusCode::UNAUTHORIZED,
            pages::error_page("Sign in first."),
        );
    };
    if !same(first(&pairs, "csrf").unwrap_or_default(), &session.csrf) {
        return html(
            StatusCode::FORBIDDEN,
            pages::error_page("The form was not issued by this server (CSRF check failed)."),
        );
    }
    let grant_id = first(&pairs, "grant_id").unwrap_or_default().to_owned();
    let ids: Vec<String> = {
        let status = app.smart.status();
        match status.grants.get(&grant_id) {
            Some(g) if g.username.as_deref() == Some(session.principal.username.as_str()) => status
                .grants_of(&g.client_id, &session.principal.username)
                .into_iter()
                .map(|g| g.grant_id.clone())
                .collect(),
            _ => Vec::new(),
        }
    };
    if let Err(e) = revoke_grants(&app, &ids, "revoked by the user").await {
        tracing::error!(error = %e, "revoking from the grants page failed");
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::error_page("The app could not be revoked; try again."),
        );
    }
    see_other("/auth/grants")
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let with_app = warp::any().map(move || app.clone());
    let cookie = warp::header::optional::<String>("cookie");
    let get = warp::get()
        .and(warp::path!("auth" / "grants"))
        .and(with_app.clone())
        .and(cookie)
        .then(show);
    let post = warp::post()
        .and(warp::path!("auth" / "grants" / "revoke"))
        .and(with_app)
        .and(form_body())
        .and(cookie)
        .then(revoke);
    get.or(post).unify().boxed()
}
