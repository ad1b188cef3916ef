//! The FHIR R4 REST API under `/fhir/r4` (and `/metadata` at the root).
//!
//! One module per group of interactions, as Blaze does it: `interactions` (read, vread,
//! create, update, delete, history, transaction/batch, capabilities, $validate) and `search`
//! (search-type, search-system, compartment search, `$everything`). Both share the error
//! replies ([`outcome`]), formats ([`format`]) and the access context ([`access`]).
//!
//! A request flows: route ([`request::classify`], before the body is read, so searches fall
//! through to the search module untouched) -> access context -> format negotiation -> body
//! (size-limited) -> [`interactions::dispatch`] -> [`format::render`].

pub mod access;
pub mod audit_event;
pub mod conditional;
pub mod format;
pub mod interactions;
pub mod outcome;
pub mod request;
pub mod search;
pub mod store;

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::Filter;

use crate::app::App;
use access::{access_context, AccessContext, Denied};
use format::{negotiate, render, FhirResponse};
use outcome::FhirError;
use request::{classify, FhirRequest, Payload, Route};

/// Every FHIR route. Each submodule returns its own filter; this is the only place they meet.
pub fn routes(app: Arc<App>) -> BoxedFilter<(warp::reply::Response,)> {
    let with_app = {
        let app = app.clone();
        warp::any().map(move || app.clone())
    };
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    // `/fhir/r4/...`: routed on method and path first, so what is not ours is left untouched.
    let api = warp::path("fhir")
        .and(warp::path("r4"))
        .and(warp::method())
        .and(warp::path::tail())
        .and(query)
        .and_then(
            |method: Method, tail: warp::path::Tail, query: String| async move {
                let segments: Vec<&str> =
                    tail.as_str().split('/').filter(|s| !s.is_empty()).collect();
                match classify(&method, &segments, !query.is_empty()) {
                    Some(route) => Ok((method, route, query)),
                    None => Err(warp::reject::not_found()),
                }
            },
        )
        .untuple_one();
    let metadata = warp::path("metadata")
        .and(warp::path::end())
        .and(warp::method())
        .and(query)
        .map(|method: Method, query: String| {
            let route = if method == Method::GET || method == Method::HEAD {
                Route::Capabilities
            } else {
                Route::MethodNotAllowed("metadata supports GET only")
            };
            (method, route, query)
        })
        .untuple_one();
    let interactions = api
        .or(metadata)
        .unify()
        .and(warp::header::headers_cloned())
        .and(access_context())
        .and(with_app)
        .and(warp::body::stream())
        .then(
            |method: Method,
             route: Route,
             query: String,
             headers: HeaderMap,
             ctx: Result<AccessContext, Denied>,
             app: Arc<App>,
             body| async move {
                let response = handle(&app, method, route, &query, &headers, ctx, body).await;
                with_cors(response, &headers)
            },
        );
    // Path before method: a method filter first would reject every other path with 405.
    let preflight = warp::path("fhir")
        .and(warp::path("r4"))
        .or(warp::path("metadata"))
        .unify()
        .and(warp::options())
        .and(warp::header::headers_cloned())
        .map(|headers: HeaderMap| preflight(&headers));
    // The search module takes whatever `classify` left alone.
    preflight
        .or(audit_event::routes(app.clone()))
        .unify()
        .or(interactions)
        .unify()
        .or(search::routes(app))
        .unify()
        .boxed()
}

async fn handle<S, B>(
    app: &App,
    method: Method,
    route: Route,
    raw_query: &str,
    headers: &HeaderMap,
    ctx: Result<AccessContext, Denied>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let base = app.config.fhir_base_url();
    let query = request::parse_query(raw_query);
    // A format the client cannot read is refused before anything else happens.
    let format = match negotiate(&query, headers) {
        Ok(f) => f,
        Err(e) => {
            return render(
                FhirResponse::from_error(&e),
                Default::default(),
                &base,
                false,
            )
        }
    };
    let head_only = method == Method::HEAD;
    audit_route(&route);
    let result = async {
        let ctx = ctx?;
        let payload = if route.takes_body() {
            request::check_content_type(headers, &route)?;
            Payload::Bytes(read_body(body, app.config.http.max_body_bytes, headers).await?)
        } else {
            Payload::None
        };
        let request = FhirRequest {
            method,
            route,
            query,
            conditions: request::conditions(headers),
            prefer: request::prefer(headers),
            payload,
        };
        interactions::dispatch(app, &ctx, request).await
    }
    .await;
    let retry_after = match &result {
        Err(FhirError::Denied(Denied::RateLimited(seconds))) => Some(*seconds),
        _ => None,
    };
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(status = e.status().as_u16(), "FHIR request failed");
            }
            FhirResponse::from_error(&e)
        }
    };
    if let Some(location) = &response.location {
        audit_written(location, &response.body);
    }
    let mut http = render(response, format, &base, head_only);
    if let Some(seconds) = retry_after {
        http.headers_mut()
            .insert(warp::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if http.status() == StatusCode::UNAUTHORIZED {
        // RFC 6750 3.1: a presented token that failed validation is `invalid_token`.
        let challenge = if headers.contains_key(warp::http::header::AUTHORIZATION) {
            "Bearer realm=\"sphere\", error=\"invalid_token\""
        } else {
            "Bearer realm=\"sphere\""
        };
        http.headers_mut().insert(
            warp::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    http
}

/// Tells the access history which interaction `route` is (capabilities and `$validate` read
/// no data and are not recorded).
fn audit_route(route: &Route) {
    let (interaction, resource_type, id) = match route {
        Route::Bundle => ("batch", None, None),
        Route::HistorySystem => ("history-system", None, None),
        Route::HistoryType(t) => ("history-type", Some(t), None),
        Route::HistoryInstance(t, id) => ("history-instance", Some(t), Some(id)),
        Route::Create(t) => ("create", Some(t), None),
        Route::ConditionalUpdate(t) => ("update", Some(t), None),
        Route::ConditionalDelete(t) => ("delete", Some(t), None),
        Route::Read(t, id) => ("read", Some(t), Some(id)),
        Route::VRead(t, id, _) => ("vread", Some(t), Some(id)),
        Route::Update(t, id) => ("update", Some(t), Some(id)),
        Route::Delete(t, id) => ("delete", Some(t), Some(id)),
        Route::Patch(t, id) => ("patch", Some(t), Some(id)),
        Route::Capabilities
        | Route::Validate(..)
        | Route::UnknownType(_)
        | Route::MethodNotAllowed(_) => return,
    };
    crate::audit::note(|n| {
        n.interaction(interaction);
        if let Some(t) = resource_type {
            n.resource_type(t);
            if let Some(id) = id {
                n.ids.push(format!("{t}/{id}"));
                if t == "Patient" {
                    n.patient(id);
                }
            }
        }
    });
}

/// A write names what it wrote (`Type/id/_history/n`) only once it has: the access history
/// keeps the id, and the patient the resource belongs to.
fn audit_written(location: &str, body: &format::Body) {
    let mut parts = location.split('/');
    let (Some(t), Some(id)) = (parts.next(), parts.next()) else {
        return;
    };
    crate::audit::note(|n| {
        let name = format!("{t}/{id}");
        if !n.ids.contains(&name) {
            n.ids.push(name);
        }
        let patients = match body {
            format::Body::Raw(json) => sphere_domain::audit::patients_in(t, id, json),
            _ if t == "Patient" => vec![id.to_owned()],
            _ => Vec::new(),
        };
        for p in &patients {
            n.patient(p);
        }
    });
}

/// Reads a request body, refusing (413) more than `limit` bytes, whether or not the client
/// declared its length.
pub(crate) async fn read_body<S, B>(
    mut body: S,
    limit: u64,
    headers: &HeaderMap,
) -> Result<Bytes, FhirError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(FhirError::PayloadTooLarge { limit });
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(limit) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk
            .map_err(|_| FhirError::BadRequest("the request body could not be read".into()))?;
        if buffer.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(FhirError::PayloadTooLarge { limit });
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

/// Browser apps call the FHIR API and `/metadata` from other origins: echo the origin back.
/// Authorization is by bearer token, never cookies, so reflecting any origin is safe.
fn with_cors(mut response: warp::reply::Response, headers: &HeaderMap) -> warp::reply::Response {
    if let Some(origin) = headers.get(warp::http::header::ORIGIN) {
        let h = response.headers_mut();
        h.insert(
            warp::http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
            origin.clone(),
        );
        h.insert(
            warp::http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Location, Content-Location, ETag, Last-Modified"),
        );
        h.append(warp::http::header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

fn preflight(headers: &HeaderMap) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(Bytes::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let h = response.headers_mut();
    h.insert(
        warp::http::header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS"),
    );
    h.insert(
        warp::http::header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-Modified-Since, If-None-Exist",
        ),
    );
    h.insert(
        warp::http::header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    with_cors(response, headers)
}
