//! FHIR search over HTTP: search-type (`GET [type]?...`, `POST [type]/_search`), compartment
//! search (`Patient/{id}/[type]`) and `Patient/{id}/$everything`.
//!
//! Handlers are thin: parse the query (`sphere_domain::fhir::search_query`), wait until the
//! search index has applied every write committed before the request started
//! (read-your-writes), search one index snapshot (`sphere_projections::search_index`), and
//! format a searchset Bundle (`bundle.rs`). What the asker's grant lets a search see is
//! decided before it runs and inside the index (`grant.rs`). Paging links carry a cursor (the
//! last sort key and id), not an offset, so they keep working while writes continue.

mod bundle;
mod everything;
mod grant;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;
use sphere_domain::fhir::search_parameters;
use sphere_domain::fhir::search_query::{self, ParseOptions, QueryError};
use sphere_projections::search_index::SearchIndexError;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::{Filter, Reply};

use crate::app::App;
use crate::fhir::access::{access_context, AccessContext, Denied, Interaction};

pub use bundle::SearchRequest;

/// Why a search could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A bad parameter value, modifier or (in strict handling) an unknown parameter: 400.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The index did not catch up with the request's own writes in time: 503.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Forbidden(String),
    /// No valid credentials: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// Over the client's rate limit: 429 with `Retry-After`.
    #[error("too many requests: retry after {0} s")]
    RateLimited(u64),
    #[error("search failed: {0}")]
    Internal(String),
}

impl From<QueryError> for SearchError {
    fn from(e: QueryError) -> Self {
        SearchError::BadRequest(e.0)
    }
}

impl From<Denied> for SearchError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated(m) => SearchError::Unauthenticated(m),
            Denied::Forbidden(m) => SearchError::Forbidden(m),
            Denied::RateLimited(seconds) => SearchError::RateLimited(seconds),
        }
    }
}

impl From<SearchIndexError> for SearchError {
    fn from(e: SearchIndexError) -> Self {
        match e {
            SearchIndexError::TooBroad(m) => SearchError::BadRequest(m),
            other => SearchError::Internal(other.to_string()),
        }
    }
}

impl SearchError {
    fn status(&self) -> StatusCode {
        match self {
            SearchError::BadRequest(_) => StatusCode::BAD_REQUEST,
            SearchError::NotFound(_) => StatusCode::NOT_FOUND,
            SearchError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            SearchError::Forbidden(_) => StatusCode::FORBIDDEN,
            SearchError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            SearchError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            SearchError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn into_response(self) -> warp::reply::Response {
        let status = self.status();
        let (code, diagnostics) = match &self {
            SearchError::BadRequest(m) => ("invalid", m.clone()),
            SearchError::NotFound(m) => ("not-found", m.clone()),
            SearchError::Unavailable(m) => ("transient", m.clone()),
            SearchError::Forbidden(m) => ("forbidden", m.clone()),
            SearchError::Unauthenticated(m) => ("login", m.clone()),
            SearchError::RateLimited(_) => ("throttled", self.to_string()),
            // Never echo internals (they could carry PHI from a query); the log has them.
            SearchError::Internal(m) => {
                tracing::error!(error = %m, "search failed");
                ("exception", "the search failed".to_owned())
            }
        };
        let body = json!({"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]});
        let mut response = fhir_json(status, body.to_string().into());
        if let SearchError::RateLimited(seconds) = self {
            response
                .headers_mut()
                .insert(warp::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn fhir_json(status: StatusCode, body: Bytes) -> warp::reply::Response {
    let mut response =
        warp::reply::with_status(warp::reply::Response::new(body.into()), status).into_response();
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json;charset=utf-8"),
    );
    response
}

fn reply(result: Result<Bytes, SearchError>) -> warp::reply::Response {
    match result {
        Ok(body) => fhir_json(StatusCode::OK, body),
        Err(e) => e.into_response(),
    }
}

/// Form-decodes a query string (or a form body).
pub fn parse_pairs(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn strict(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split([',', ';']).any(|p| p.trim() == "handling=strict"))
}

/// The base for links: the configured public URL, else the Host the client used.
fn link_base(app: &App, headers: &HeaderMap) -> String {
    if !app.config.public_base_url.is_empty() {
        return app.config.fhir_base_url();
    }
    match headers.get("host").and_then(|h| h.to_str().ok()) {
        Some(host) => {
            let scheme = if app.config.tls.enabled {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}/fhir/r4")
        }
        None => app.config.fhir_base_url(),
    }
}

/// Waits until the search index holds every write committed before now (read-your-writes).
pub(crate) async fn wait_for_index(app: &App) -> Result<(), SearchError> {
    let head = app
        .log
        .head()
        .await
        .map_err(|e| SearchError::Internal(e.to_string()))?;
    if let Some(head) = head {
        app.wait_for_projections(head)
            .await
            .map_err(|e| SearchError::Unavailable(format!("the search index is behind: {e}")))?;
    }
    Ok(())
}

fn with_app(
    app: Arc<App>,
) -> impl Filter<Extract = (Arc<App>,), Error = std::convert::Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// Every search route, under `/fhir/r4`.
pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let base = warp::path("fhir").and(warp::path("r4"));

    // GET with the query, or POST `.../_search` with the query and a form body: the same
    // parameters either way.
    let query_pairs = raw_query.map(|q: String| parse_pairs(&q));
    let form_pairs = raw_query
        .and(warp::body::content_length_limit(1024 * 1024))
        .and(warp::body::bytes())
        .map(|q: String, body: Bytes| {
            let mut pairs = parse_pairs(&q);
            pairs.extend(parse_pairs(&String::from_utf8_lossy(&body)));
            pairs
        });
    let asker = warp::header::headers_cloned()
        .and(access_context())
        .and(with_app(app.clone()));

    let search = base
        .and(warp::get())
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(query_pairs)
        .or(base
            .and(warp::post())
            .and(warp::path::param::<String>())
            .and(warp::path("_search"))
            .and(warp::path::end())
            .and(form_pairs))
        .unify()
        .and(asker.clone())
        .then(
            |resource_type: String,
             pairs: Vec<(String, String)>,
             headers: HeaderMap,
             ctx: Result<AccessContext, Denied>,
             app: Arc<App>| async move {
                reply(search_type(&app, &headers, ctx, &resource_type, None, pairs).await)
            },
        );

    let compartment = base
        .and(warp::get())
        .and(warp::path("Patient"))
        .and(warp::path::param::<String>())
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(query_pairs)
        .and(asker.clone())
        .then(
            |patient: String,
             what: String,
             pairs: Vec<(String, String)>,
             headers: HeaderMap,
             ctx: Result<AccessContext, Denied>,
             app: Arc<App>| async move {
                if what == "$everything" {
                    crate::audit::note(|n| {
                        n.interaction("operation")
                            .resource_type("Patient")
                            .patient(&patient);
                        n.operation = Some("$everything".into());
                    });
                    let ctx = match ctx {
                        Ok(c) => c,
                        Err(d) => return SearchError::from(d).into_response(),
                    };
                    reply(everything::everything(&app, &headers, &ctx, &patient, pairs).await)
                } else {
                    reply(search_type(&app, &headers, ctx, &what, Some(patient), pairs).await)
                }
            },
        );

    let system = base
        .and(warp::get())
        .and(warp::path::end())
        .and(query_pairs)
        .or(base
            .and(warp::post())
            .and(warp::path("_search"))
            .and(warp::path::end())
            .and(form_pairs))
        .unify()
        .and(asker)
        .then(
            |pairs: Vec<(String, String)>,
             headers: HeaderMap,
             ctx: Result<AccessContext, Denied>,
             app: Arc<App>| async move {
                reply(search_system(&app, &headers, ctx, pairs).await)
            },
        );

    system.or(search).unify().or(compartment).unify().boxed()
}

async fn search_type(
    app: &Arc<App>,
    headers: &HeaderMap,
    ctx: Result<AccessContext, Denied>,
    resource_type: &str,
    compartment: Option<String>,
    pairs: Vec<(String, String)>,
) -> Result<Bytes, SearchError> {
    if search_parameters(resource_type).is_empty() {
        return Err(SearchError::NotFound(format!(
            "{resource_type} is not a resource type this server supports"
        )));
    }
    crate::audit::note(|n| {
        n.interaction("search-type").resource_type(resource_type);
        n.query = Some(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish(),
        );
        if let Some(p) = &compartment {
            n.patient(p);
        }
    });
    let ctx = ctx?;
    ctx.check(Interaction::SearchType, Some(resource_type), None)?;
    // A patient-only grant searches its patient's compartment: nothing beyond it is matched,
    // so neither entries nor `total` say anything about other patients.
    let compartment = match (
        ctx.confined_to_patient(Interaction::SearchType, resource_type),
        compartment,
    ) {
        (Some(own), Some(asked)) if asked != own => {
            return Err(SearchError::Forbidden(
                "insufficient_scope: outside the patient in context".into(),
            ))
        }
        (Some(own), _) => Some(own.to_owned()),
        (None, asked) => asked,
    };
    if let Some(patient) = &compartment {
        if !sphere_domain::fhir::in_patient_compartment(resource_type) {
            return Err(SearchError::BadRequest(format!(
                "{resource_type} is not in the Patient compartment ({patient})"
            )));
        }
    }
    let options = ParseOptions {
        strict: strict(headers),
        base_url: app.config.fhir_base_url(),
    };
    let mut query = search_query::parse(resource_type, &pairs, &options)?;
    grant::authorize_traversals(&ctx, &mut query)?;
    grant::fold_granted_queries(&ctx, &mut query, &options.base_url);
    wait_for_index(app).await?;
    let request = SearchRequest {
        query,
        pairs,
        link_base: link_base(app, headers),
        compartment,
        access: ctx,
        system: None,
        recorded: false,
    };
    execute(app, request).await
}

/// Runs `request` on a blocking thread and notes what it returned for the access history.
async fn execute(app: &App, mut request: SearchRequest) -> Result<Bytes, SearchError> {
    request.recorded = crate::audit::recording();
    let index = app.search.clone();
    let found = tokio::task::spawn_blocking(move || bundle::execute(&index, &request))
        .await
        .map_err(|e| SearchError::Internal(e.to_string()))??;
    crate::audit::note(|n| {
        n.ids = found.ids;
        for p in &found.patients {
            n.patient(p);
        }
    });
    Ok(found.body)
}

/// Parameters every resource type has (FHIR's `Resource` search parameters), the only ones a
/// system search without `_type` may filter on.
const COMMON_PARAMETERS: &[&str] = &[
    "_id",
    "_lastUpdated",
    "_tag",
    "_profile",
    "_security",
    "_source",
    "_text",
    "_content",
];

/// Result parameters: they shape the answer and apply to every type.
const RESULT_PARAMETERS: &[&str] = &[
    "_count",
    "_cursor",
    "_total",
    "_summary",
    "_elements",
    "_sort",
    "_include",
    "_include:iterate",
    "_revinclude",
    "_revinclude:iterate",
    "_format",
    "_pretty",
];

/// Search-system (`GET [base]?_type=A,B&...`, `POST [base]/_search`): the same parameters on
/// each listed type (every type the client may search when `_type` is absent, where only the
/// parameters all resources share are allowed), one page across them.
async fn search_system(
    app: &Arc<App>,
    headers: &HeaderMap,
    ctx: Result<AccessContext, Denied>,
    pairs: Vec<(String, String)>,
) -> Result<Bytes, SearchError> {
    crate::audit::note(|n| {
        n.interaction("search-system");
        n.query = Some(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish(),
        );
    });
    let ctx = ctx?;
    let named: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "_type")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let mut types: Vec<String> = Vec::new();
    if named.is_empty() {
        if let Some((name, _)) = pairs.iter().find(|(k, _)| {
            let base = k.split([':', '.']).next().unwrap_or(k);
            !COMMON_PARAMETERS.contains(&base)
                && !RESULT_PARAMETERS.contains(&k.as_str())
                && !k.starts_with("_has:")
        }) {
            return Err(SearchError::BadRequest(format!(
                "parameter {name} is not common to all resource types; name the types with _type"
            )));
        }
        for t in &sphere_domain::fhir::capability::capability().supported_types {
            // AuditEvent is served from the access history, not the resource index.
            if t != "AuditEvent"
                && !search_parameters(t).is_empty()
                && ctx.check(Interaction::SearchType, Some(t), None).is_ok()
            {
                types.push(t.clone());
            }
        }
    } else {
        for t in named {
            if search_parameters(&t).is_empty() || t == "AuditEvent" {
                return Err(SearchError::BadRequest(format!(
                    "_type: {} is not a resource type this server searches",
                    t.chars().take(64).collect::<String>()
                )));
            }
            ctx.check(Interaction::SearchType, Some(&t), None)?;
            if !types.contains(&t) {
                types.push(t);
            }
        }
    }
    ctx.check(Interaction::SearchSystem, None, None)?;
    let Some(first) = types.first() else {
        return Err(SearchError::Forbidden(
            "no resource type may be searched with this token".into(),
        ));
    };
    let options = ParseOptions {
        strict: strict(headers),
        base_url: app.config.fhir_base_url(),
    };
    let typed: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "_type")
        .cloned()
        .collect();
    let mut query = search_query::parse(first, &typed, &options)?;
    grant::authorize_traversals(&ctx, &mut query)?;
    grant::fold_granted_queries(&ctx, &mut query, &options.base_url);
    let mut others = Vec::with_capacity(types.len() - 1);
    for t in &types[1..] {
        let mut other = search_query::parse(t, &typed, &options)?;
        grant::authorize_traversals(&ctx, &mut other)?;
        grant::fold_granted_queries(&ctx, &mut other, &options.base_url);
        for ignored in &other.ignored {
            if !query.ignored.contains(ignored) {
                query.ignored.push(ignored.clone());
            }
        }
        others.push(other);
    }
    wait_for_index(app).await?;
    let request = SearchRequest {
        query,
        pairs,
        link_base: link_base(app, headers),
        compartment: None,
        access: ctx,
        system: Some(others),
        recorded: false,
    };
    execute(app, request).await
}

/// The ids of `resource_type` resources matching `query` (a query string such as
/// `identifier=urn:mrn|123`) that `ctx` may see: conditional create, update and delete. Waits
/// for read-your-writes like every search. Unknown parameters are an error here: a conditional
/// write must never match more than its author meant, and never what its grant cannot see (an
/// `If-None-Exist` match is answered with the resource).
pub async fn find_ids(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    query: &str,
) -> Result<Vec<String>, SearchError> {
    let pairs = parse_pairs(query);
    let options = ParseOptions {
        strict: true,
        base_url: app.config.fhir_base_url(),
    };
    let mut parsed = search_query::parse(resource_type, &pairs, &options)?;
    grant::authorize_traversals(ctx, &mut parsed)?;
    grant::fold_granted_queries(ctx, &mut parsed, &options.base_url);
    wait_for_index(app).await?;
    let index = app.search.clone();
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        index
            .snapshot()
            .matching_ids(&parsed.resource_type, &parsed.clauses, &ctx)
            .map_err(SearchError::from)
    })
    .await
    .map_err(|e| SearchError::Internal(e.to_string()))?
}
