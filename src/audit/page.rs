//! `/auth/access-history`: the signed-in patient sees who accessed their record - which app,
//! which user, what kind of access, when, and whether it was allowed. Server-rendered HTML,
//! no JavaScript, the same session cookie as the grants page.

use std::sync::Arc;

use sphere_domain::audit::AccessRecord;
use sphere_projections::audit_view::AuditQuery;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::Filter;

use crate::app::App;
use crate::smart::pages;
use crate::smart::reply::{escape, html};
use crate::smart::session::session_cookie;

/// Most accesses listed (newest first).
const SHOWN: usize = 500;

/// What an interaction means to a patient.
fn plain(r: &AccessRecord) -> String {
    let types = if r.types.is_empty() {
        "your record".to_owned()
    } else {
        r.types.join(", ")
    };
    match (r.interaction.as_str(), r.operation.as_deref()) {
        ("read" | "vread", _) => format!("Viewed {types}"),
        ("search-type", _) => format!("Searched {types} ({} found)", r.ids.len()),
        ("history-instance" | "history-type", _) => format!("Viewed the history of {types}"),
        ("operation", Some("$everything")) => "Retrieved your whole record".to_owned(),
        ("bulk-export", _) => "Exported records in bulk".to_owned(),
        ("token", _) => "Was given access (a token was issued)".to_owned(),
        ("create" | "update" | "patch", _) => format!("Changed {types}"),
        ("delete", _) => format!("Deleted {types}"),
        (other, _) => other.to_owned(),
    }
}

fn outcome(status: u16) -> &'static str {
    match status {
        0..=399 => "Allowed",
        401 | 403 => "Refused",
        429 => "Refused (too many requests)",
        404 | 410 => "Not found",
        _ => "Failed",
    }
}

async fn show(app: Arc<App>, cookie: Option<String>) -> warp::reply::Response {
    let Some(session) =
        session_cookie(cookie.as_deref()).and_then(|id| app.smart.sessions.session(&id))
    else {
        return html(StatusCode::OK, pages::login(None, "", "", None));
    };
    crate::audit::note(|n| {
        n.interaction("access-history").actor.user = Some(session.principal.username.clone());
    });
    let Some(patient) = session.principal.patient_id().map(str::to_owned) else {
        return html(
            StatusCode::OK,
            pages::page(
                "Who accessed your record",
                "<p>This page lists the accesses to a patient's own record; you are not signed in as a patient.</p>",
            ),
        );
    };
    crate::audit::note(|n| {
        n.patient(&patient);
    });
    if let Err(e) = app.audit_view_caught_up().await {
        // The page still shows what the view holds.
        tracing::warn!(error = %e, "the audit view is behind");
    }
    let view = app.audit_view.clone();
    let query = AuditQuery {
        patient: Some(patient.clone()),
        ..Default::default()
    };
    let searched = tokio::task::spawn_blocking(move || view.search(&query, SHOWN, None)).await;
    let (total, entries) = match searched {
        Ok(Ok(page)) => (page.total, page.entries),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the access-history page could not read the audit view");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::error_page("The access history is not available right now."),
            );
        }
        Err(_) => {
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::error_page("The access history is not available right now."),
            )
        }
    };
    let names = {
        let status = app.smart.status();
        move |client: &str| {
            status
                .apps
                .get(client)
                .map(|a| a.registration.client_name.clone())
                .unwrap_or_else(|| client.to_owned())
        }
    };
    let mut rows = String::new();
    for e in &entries {
        let r = &e.record;
        let app_name = r
            .client_id
            .as_deref()
            .map(&names)
            .unwrap_or_else(|| "-".into());
        rows.push_str(&format!(
            "<tr><td><time datetime=\"{when}\">{when}</time></td><td>{app}</td><td>{user}</td><td>{what}</td><td>{outcome}</td></tr>",
            when = escape(&crate::fhir::store::instant(r.recorded_ms)),
            app = escape(&app_name),
            user = escape(r.user.as_deref().unwrap_or("-")),
            what = escape(&plain(r)),
            outcome = outcome(r.status),
        ));
    }
    let body = if entries.is_empty() {
        "<p>Nobody has accessed your record yet.</p>".to_owned()
    } else {
        format!(
            "<p>{total} accesses, newest first{more}.</p>\
<table><caption>Accesses to your record</caption><thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">App</th>\
<th scope=\"col\">User</th><th scope=\"col\">What</th><th scope=\"col\">Outcome</th></tr></thead><tbody>{rows}</tbody></table>",
            more = if total > entries.len() {
                format!(" (the latest {} shown)", entries.len())
            } else {
                String::new()
            },
        )
    };
    html(
        StatusCode::OK,
        pages::page(
            "Who accessed your record",
            &format!(
                "<p>Signed in as <strong>{}</strong>. <a href=\"/auth/grants\">Your authorized apps</a></p>{body}",
                escape(&session.principal.username)
            ),
        ),
    )
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    warp::get()
        .and(warp::path!("auth" / "access-history"))
        .and(warp::any().map(move || app.clone()))
        .and(warp::header::optional::<String>("cookie"))
        .then(show)
        .boxed()
}
