//! `AuditEvent` (read and search-type only): the access history as FHIR Basic Audit Log
//! Patterns `AuditEvent`s, served from the audit view (`sphere_projections::audit_view`).
//!
//! The server writes the history itself (`crate::audit`); every write interaction on
//! `AuditEvent` is refused with 405. Reading the history is itself recorded - once, after the
//! response is built, so it can never feed on itself.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use sphere_domain::audit::to_audit_event;
use sphere_domain::fhir::search_value::parse_date;
use sphere_projections::audit_view::{AuditEntry, AuditQuery};
use sphere_projections::ProjectionError;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use super::access::{access_context, AccessContext, Denied, Interaction};
use super::format::{negotiate, render, Body, FhirResponse};
use super::outcome::FhirError;
use crate::app::App;
use crate::eventlog::Position;

/// The search parameters, with their FHIR types: the parser and the CapabilityStatement both
/// read this table.
pub const SEARCH_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "The id of the AuditEvent"),
    ("patient", "reference", "A patient whose data was accessed"),
    ("agent", "token", "A client id or username of who accessed"),
    (
        "date",
        "date",
        "When the access happened (eq, ne is not supported; ge, gt, le, lt)",
    ),
    (
        "type",
        "token",
        "rest, or DICOM 110114 for sign-in and tokens",
    ),
    (
        "subtype",
        "token",
        "read, vread, search-type, ... or login, token",
    ),
];

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;
const MAX_BODY: usize = 64 * 1024;

fn observer(app: &App) -> String {
    format!("Sphere EHR {}", app.config.base_url())
}

/// `AuditEvent` as the CapabilityStatement lists it.
pub fn capability_entry() -> Value {
    json!({
        "type": "AuditEvent",
        "profile": "http://hl7.org/fhir/StructureDefinition/AuditEvent",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": SEARCH_PARAMS.iter().map(|(name, kind, doc)| json!({
            "name": name,
            "type": kind,
            "documentation": doc,
        })).collect::<Vec<_>>(),
    })
}

pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let with_app = warp::any().map(move || app.clone());
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::path!("fhir" / "r4" / "AuditEvent" / ..)
        .and(warp::method())
        .and(warp::path::tail())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(access_context())
        .and(with_app)
        .and(warp::body::stream())
        .then(
            |method: Method,
             tail: warp::path::Tail,
             query: String,
             headers: HeaderMap,
             ctx: Result<AccessContext, Denied>,
             app: Arc<App>,
             body| async move {
                let pairs = super::search::parse_pairs(&query);
                let format = match negotiate(&pairs, &headers) {
                    Ok(f) => f,
                    Err(e) => {
                        return render(
                            FhirResponse::from_error(&e),
                            Default::default(),
                            &app.config.fhir_base_url(),
                            false,
                        )
                    }
                };
                let result = handle(&app, &method, tail.as_str(), pairs, ctx, Box::pin(body)).await;
                let response = result.unwrap_or_else(|e| FhirResponse::from_error(&e));
                let mut http = render(
                    response,
                    format,
                    &app.config.fhir_base_url(),
                    method == Method::HEAD,
                );
                if http.status() == StatusCode::UNAUTHORIZED {
                    http.headers_mut().insert(
                        warp::http::header::WWW_AUTHENTICATE,
                        warp::http::HeaderValue::from_static("Bearer realm=\"sphere\""),
                    );
                }
                http
            },
        )
        .boxed()
}

async fn handle<S, B>(
    app: &App,
    method: &Method,
    tail: &str,
    mut pairs: Vec<(String, String)>,
    ctx: Result<AccessContext, Denied>,
    body: S,
) -> Result<FhirResponse, FhirError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    let segments: Vec<&str> = tail.split('/').filter(|s| !s.is_empty()).collect();
    let get = *method == Method::GET || *method == Method::HEAD;
    match (get, *method == Method::POST, segments.as_slice()) {
        (true, _, []) => {
            note("search-type", None);
            search(app, &ctx?, &pairs).await
        }
        (_, true, ["_search"]) => {
            note("search-type", None);
            pairs.extend(super::search::parse_pairs(&String::from_utf8_lossy(
                &read_form(body).await?,
            )));
            search(app, &ctx?, &pairs).await
        }
        (true, _, [id]) => {
            note("read", Some(id));
            read(app, &ctx?, id).await
        }
        _ => Err(FhirError::MethodNotAllowed(
            "AuditEvent is read-only: the server records the access history itself (use GET to read or search)"
                .into(),
        )),
    }
}

fn note(interaction: &str, id: Option<&str>) {
    crate::audit::note(|n| {
        n.interaction(interaction).resource_type("AuditEvent");
        if let Some(id) = id {
            n.ids.push(format!(
                "AuditEvent/{}",
                id.chars().take(64).collect::<String>()
            ));
        }
    });
}

async fn read_form<S, B>(mut body: S) -> Result<Bytes, FhirError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: bytes::Buf,
{
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk
            .map_err(|_| FhirError::BadRequest("the request body could not be read".into()))?;
        if buffer.len() + chunk.remaining() > MAX_BODY {
            return Err(FhirError::PayloadTooLarge {
                limit: MAX_BODY as u64,
            });
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            buffer.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(buffer.freeze())
}

/// Waits until the audit view holds every access recorded before this request.
async fn caught_up(app: &App) -> Result<(), FhirError> {
    app.audit_view_caught_up().await.map_err(|e| {
        tracing::warn!(error = %e, "the audit view is behind");
        FhirError::Unavailable("the access history is catching up; retry shortly".into())
    })
}

/// The entry as an AuditEvent, if `ctx` may see it (a patient-scoped token sees only its
/// patient's accesses: the policy checks the `entity` references like any compartment).
fn visible(
    app: &App,
    ctx: &AccessContext,
    interaction: Interaction,
    e: &AuditEntry,
) -> Option<Value> {
    let resource = to_audit_event(&e.id, &e.record, &observer(app));
    if ctx.is_operator() {
        return Some(resource);
    }
    ctx.check(interaction, Some("AuditEvent"), Some(&resource))
        .ok()
        .map(|_| resource)
}

async fn read(app: &App, ctx: &AccessContext, id: &str) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::Read, Some("AuditEvent"), None)?;
    caught_up(app).await?;
    let view = app.audit_view.clone();
    let wanted = id.to_owned();
    let entry = from_view(tokio::task::spawn_blocking(move || view.get(&wanted)).await)?;
    let not_found = || {
        FhirError::NotFound(format!(
            "AuditEvent/{} does not exist",
            id.chars().take(64).collect::<String>()
        ))
    };
    let entry = entry.ok_or_else(not_found)?;
    let resource = visible(app, ctx, Interaction::Read, &entry).ok_or_else(|| {
        FhirError::Denied(Denied::Forbidden(
            "insufficient_scope: outside the patient in context".into(),
        ))
    })?;
    let mut response = FhirResponse::new(StatusCode::OK, Body::Json(resource));
    response.version = Some(1);
    response.last_modified_ms = Some(entry.record.recorded_ms);
    Ok(response)
}

/// A search as the parameters state it: the query, the page size and where the page starts.
#[derive(Debug)]
pub struct AuditSearch {
    pub query: AuditQuery,
    pub count: usize,
    /// The `_cursor` of a `next` link: the page holds entries older than this.
    pub cursor: Option<Position>,
}

/// Parses the search parameters.
pub fn parse_query(pairs: &[(String, String)]) -> Result<AuditSearch, FhirError> {
    let mut q = AuditQuery::default();
    let mut count = DEFAULT_COUNT;
    let mut cursor = None;
    for (key, value) in pairs {
        let bad = |why: &str| FhirError::BadRequest(format!("{key}={value:?}: {why}"));
        let list = || -> Vec<String> {
            value
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect()
        };
        match key.as_str() {
            "_id" => q.id = Some(value.clone()),
            "patient" => {
                let id = value
                    .rsplit_once("Patient/")
                    .map_or(value.as_str(), |(_, id)| id);
                if id.is_empty() {
                    return Err(bad("not a patient id or Patient/{id} reference"));
                }
                q.patient = Some(id.to_owned());
            }
            "agent" => q.agent = Some(value.clone()),
            "type" => q.types.extend(list()),
            "subtype" => q.subtypes.extend(list()),
            "date" => {
                let (prefix, text) = match value.get(..2) {
                    Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
                    _ => ("eq", value.as_str()),
                };
                let range = parse_date(text).ok_or_else(|| bad("not a FHIR date or dateTime"))?;
                let (from, to) = match prefix {
                    "ge" => (Some(range.low), None),
                    "gt" => (Some(range.high + 1), None),
                    "le" => (None, Some(range.high)),
                    "lt" => (None, Some(range.low - 1)),
                    _ => (Some(range.low), Some(range.high)),
                };
                if let Some(f) = from {
                    q.from_ms = Some(q.from_ms.map_or(f, |x: i64| x.max(f)));
                }
                if let Some(t) = to {
                    q.to_ms = Some(q.to_ms.map_or(t, |x: i64| x.min(t)));
                }
            }
            "_count" => {
                count = value
                    .parse::<usize>()
                    .map_err(|_| bad("not a number"))?
                    .min(MAX_COUNT)
            }
            "_cursor" => {
                cursor = Some(Position(value.parse::<u64>().map_err(|_| {
                    FhirError::BadRequest("_cursor is not a cursor this server issued".into())
                })?))
            }
            "_format" | "_pretty" => {}
            other => {
                let known: Vec<&str> = SEARCH_PARAMS.iter().map(|(n, _, _)| *n).collect();
                return Err(FhirError::BadRequest(format!(
                    "AuditEvent has no search parameter {:?}; supported: {}, _count, _cursor",
                    other.chars().take(64).collect::<String>(),
                    known.join(", ")
                )));
            }
        }
    }
    Ok(AuditSearch {
        query: q,
        count,
        cursor,
    })
}

async fn search(
    app: &App,
    ctx: &AccessContext,
    pairs: &[(String, String)],
) -> Result<FhirResponse, FhirError> {
    ctx.check(Interaction::SearchType, Some("AuditEvent"), None)?;
    let AuditSearch {
        mut query,
        count,
        cursor,
    } = parse_query(pairs)?;
    // A patient-scoped token searches its own patient's history only.
    if !ctx.is_operator() {
        if let Some(p) = &ctx.patient {
            if query.patient.as_ref().is_some_and(|q| q != p) {
                return Ok(bundle(app, pairs, 0, Vec::new(), None));
            }
            query.patient = Some(p.clone());
        }
    }
    caught_up(app).await?;
    let view = app.audit_view.clone();
    let page =
        from_view(tokio::task::spawn_blocking(move || view.search(&query, count, cursor)).await)?;
    let resources: Vec<Value> = page
        .entries
        .iter()
        .filter_map(|e| visible(app, ctx, Interaction::SearchType, e))
        .collect();
    Ok(bundle(app, pairs, page.total, resources, page.next))
}

/// The audit view's answer, its failures as a 500 without detail (the log has them).
fn from_view<T>(
    answer: Result<Result<T, ProjectionError>, tokio::task::JoinError>,
) -> Result<T, FhirError> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "the audit view failed");
            Err(FhirError::Internal(
                "the access history could not be read".into(),
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "the audit view task failed");
            Err(FhirError::Internal(
                "the access history could not be read".into(),
            ))
        }
    }
}

/// `AuditEvent?{pairs}` with `_cursor` set to `cursor` (or dropped).
fn search_url(base: &str, pairs: &[(String, String)], cursor: Option<Position>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.extend_pairs(pairs.iter().filter(|(k, _)| k != "_cursor"));
    if let Some(c) = cursor {
        query.append_pair("_cursor", &c.0.to_string());
    }
    format!("{base}/AuditEvent?{}", query.finish())
}

fn bundle(
    app: &App,
    pairs: &[(String, String)],
    total: usize,
    resources: Vec<Value>,
    next: Option<Position>,
) -> FhirResponse {
    let base = app.config.fhir_base_url();
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| {
            json!({
                "fullUrl": format!("{base}/AuditEvent/{}", r["id"].as_str().unwrap_or_default()),
                "resource": r,
                "search": {"mode": "match"},
            })
        })
        .collect();
    let this_page = pairs
        .iter()
        .find(|(k, _)| k == "_cursor")
        .and_then(|(_, v)| v.parse().ok())
        .map(Position);
    let mut links = vec![json!({"relation": "self", "url": search_url(&base, pairs, this_page)})];
    if let Some(next) = next {
        links.push(json!({"relation": "next", "url": search_url(&base, pairs, Some(next))}));
    }
    FhirResponse::json(
        StatusCode::OK,
        json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": total,
            "link": links,
            "entry": entries,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        super::super::search::parse_pairs(q)
    }

    #[test]
    fn search_parameters_parse_into_a_query() {
        let AuditSearch {
            query: q,
            count,
            cursor,
        } = parse_query(&pairs(
            "patient=Patient/p1&agent=app-y&date=ge2026-01-01&date=lt2026-01-02&subtype=read,vread&_count=5&_cursor=42",
        ))
        .unwrap();
        assert_eq!(cursor, Some(Position(42)));
        assert_eq!(q.patient.as_deref(), Some("p1"));
        assert_eq!(q.agent.as_deref(), Some("app-y"));
        assert_eq!(q.from_ms, Some(1_767_225_600_000));
        assert_eq!(q.to_ms, Some(1_767_312_000_000 - 1));
        assert_eq!(q.subtypes, vec!["read", "vread"]);
        assert_eq!(count, 5);
    }

    #[test]
    fn bad_parameters_are_refused_with_a_reason() {
        let e = parse_query(&pairs("date=yesterday")).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = parse_query(&pairs("_cursor=abc")).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = parse_query(&pairs("name=x")).unwrap_err();
        assert!(e.to_string().contains("supported"), "{e}");
    }
}
