//! transaction and batch (`POST [base]` with a Bundle).
//!
//! A batch runs each entry as if it were sent alone ([`super::dispatch`]), and one entry's
//! failure is only that entry's response. A transaction is planned in FHIR's processing order
//! (DELETE, POST, PUT, GET), its `urn:uuid:` fullUrls are given ids and every reference to them
//! is rewritten, every resource is validated, and then all its writes go to the log as ONE
//! `append_multi`: every stream's expected revision is checked and either everything commits or
//! nothing does. A failed transaction leaves no trace.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};
use sphere_domain::fhir_rest::{self, processing_order, EntryMethod};
use sphere_domain::resource::{is_valid_id, stream_name};
use warp::http::{Method, StatusCode};

use super::super::access::{AccessContext, Interaction};
use super::super::conditional;
use super::super::format::{Body, FhirResponse};
use super::super::outcome::FhirError;
use super::super::request::{
    classify, parse_query, Conditions, FhirRequest, Payload, Return, Route,
};
use super::super::store::{self, PreparedWrite, StoredVersion};
use super::{await_projections, check_valid, dispatch, parse_json, unknown_type};
use crate::app::App;
use crate::eventlog::{EventLogError, ExpectedRevision};

/// One Bundle entry, parsed.
pub(super) struct Entry {
    method: EntryMethod,
    route: Option<Route>,
    query: Vec<(String, String)>,
    full_url: Option<String>,
    resource: Option<Value>,
    conditions: Conditions,
}

pub async fn bundle(
    app: &App,
    ctx: &AccessContext,
    request: FhirRequest,
) -> Result<FhirResponse, FhirError> {
    let mut bundle = match request.payload {
        Payload::Bytes(ref b) => parse_json(b)?,
        Payload::Json(v) => v,
        Payload::None => {
            return Err(FhirError::BadRequest(
                "POST to the base needs a Bundle".into(),
            ))
        }
    };
    if bundle["resourceType"] != "Bundle" {
        return Err(FhirError::BadRequest(
            "POST to the base takes a transaction or batch Bundle".into(),
        ));
    }
    let raw_entries = match bundle.get_mut("entry") {
        None => Vec::new(),
        Some(Value::Array(a)) => std::mem::take(a),
        Some(_) => {
            return Err(FhirError::BadRequest(
                "Bundle.entry must be an array".into(),
            ))
        }
    };
    let base = app.config.fhir_base_url();
    match bundle["type"].as_str() {
        Some("batch") => Ok(batch(app, ctx, &base, raw_entries, request.prefer).await),
        Some("transaction") => {
            let mut entries = Vec::with_capacity(raw_entries.len());
            for (i, e) in raw_entries.into_iter().enumerate() {
                entries.push(
                    parse_entry(&base, e)
                        .map_err(|err| err.within(&format!("Bundle.entry[{i}]")))?,
                );
            }
            transaction(app, ctx, &base, entries, request.prefer).await
        }
        _ => Err(FhirError::BadRequest(
            "Bundle.type must be transaction or batch".into(),
        )),
    }
}

pub(super) fn parse_entry(base: &str, entry: Value) -> Result<Entry, FhirError> {
    let Value::Object(mut entry) = entry else {
        return Err(FhirError::BadRequest("an entry must be an object".into()));
    };
    let request = entry.remove("request").unwrap_or(Value::Null);
    let method_text = request["method"].as_str().unwrap_or("");
    let method = EntryMethod::parse(method_text).ok_or_else(|| {
        FhirError::BadRequest("request.method must be GET, HEAD, POST, PUT, PATCH or DELETE".into())
    })?;
    let url = request["url"]
        .as_str()
        .ok_or_else(|| FhirError::BadRequest("request.url is required".into()))?;
    let relative = url
        .strip_prefix(base)
        .or_else(|| url.strip_prefix("/fhir/r4"))
        .unwrap_or(url)
        .trim_start_matches('/');
    let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let http_method = Method::from_bytes(method.as_str().as_bytes())
        .map_err(|_| FhirError::BadRequest("request.method is not an HTTP method".into()))?;
    let route = classify(&http_method, &segments, !query.is_empty());
    let text = |k: &str| request[k].as_str().map(str::to_owned);
    Ok(Entry {
        method,
        route,
        query: parse_query(query),
        full_url: entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_owned),
        resource: entry.remove("resource"),
        conditions: Conditions {
            if_match: text("ifMatch"),
            if_none_match: text("ifNoneMatch"),
            if_modified_since: text("ifModifiedSince"),
            if_none_exist: text("ifNoneExist"),
        },
    })
}

async fn batch(
    app: &App,
    ctx: &AccessContext,
    base: &str,
    raw_entries: Vec<Value>,
    prefer: Option<Return>,
) -> FhirResponse {
    let mut out = Vec::with_capacity(raw_entries.len());
    for (i, raw) in raw_entries.into_iter().enumerate() {
        let result = match parse_entry(base, raw) {
            Err(e) => Err(e.within(&format!("Bundle.entry[{i}]"))),
            Ok(entry) => match entry.route {
                None => Err(FhirError::NotImplemented(
                    "searches inside a batch are not supported yet".into(),
                )),
                Some(Route::Bundle) => Err(FhirError::BadRequest(
                    "a batch cannot contain another Bundle request".into(),
                )),
                Some(route) => {
                    let request = FhirRequest {
                        method: Method::from_bytes(entry.method.as_str().as_bytes())
                            .unwrap_or(Method::GET),
                        route,
                        query: entry.query,
                        conditions: entry.conditions,
                        prefer,
                        payload: entry.resource.map(Payload::Json).unwrap_or(Payload::None),
                    };
                    dispatch(app, ctx, request).await
                }
            },
        };
        let response = result.unwrap_or_else(|e| FhirResponse::from_error(&e));
        out.push(response_entry(base, &response, None));
    }
    FhirResponse::json(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": out}),
    )
}

/// What a transaction entry will do.
enum Plan {
    /// Write this resource (stamped later, once ids and references are final).
    Put {
        resource_type: String,
        id: String,
        resource: Map<String, Value>,
        if_match: Option<u64>,
    },
    /// Delete this version.
    Delete(StoredVersion),
    /// Nothing to write; answer this (conditional create that matched, delete of nothing).
    Answer(FhirResponse),
    /// A read, run after the commit.
    Read(FhirRequest),
}

async fn transaction(
    app: &App,
    ctx: &AccessContext,
    base: &str,
    mut entries: Vec<Entry>,
    prefer: Option<Return>,
) -> Result<FhirResponse, FhirError> {
    let methods: Vec<EntryMethod> = entries.iter().map(|e| e.method).collect();
    let order = processing_order(&methods);
    let mut plans: Vec<Option<Plan>> = (0..entries.len()).map(|_| None).collect();
    // fullUrl -> `Type/id` of the resource it becomes.
    let mut ids: HashMap<String, String> = HashMap::new();
    for &i in &order {
        let at = format!("Bundle.entry[{i}]");
        let plan = plan_entry(app, ctx, &mut entries[i], &mut ids)
            .await
            .map_err(|e| e.within(&at))?;
        plans[i] = Some(plan);
    }
    // The current revision of every stream written without ifMatch, asked for all at once
    // (one read instead of one per entry).
    let unconditional: Vec<String> = order
        .iter()
        .filter_map(|&i| match &plans[i] {
            Some(Plan::Put {
                resource_type,
                id,
                if_match: None,
                ..
            }) => Some(stream_name(resource_type, id)),
            _ => None,
        })
        .collect();
    let looked_up = app.log.stream_revisions(unconditional.clone()).await?;
    let revisions: HashMap<String, Option<u64>> =
        unconditional.into_iter().zip(looked_up).collect();
    // Every id is known: rewrite references to new resources, then validate.
    let now = store::now_ms();
    let correlation = uuid::Uuid::now_v7();
    let mut writes: Vec<(usize, PreparedWrite, bool)> = Vec::new();
    let mut streams = HashSet::new();
    for &i in &order {
        let at = format!("Bundle.entry[{i}]");
        let plan = plans[i].as_mut().expect("planned above");
        let prepared = match plan {
            Plan::Put {
                resource_type,
                id,
                resource,
                if_match,
            } => {
                let mut value = Value::Object(std::mem::take(resource));
                fhir_rest::rewrite_references(&mut value, &ids);
                ctx.check(Interaction::Update, Some(resource_type), Some(&value))
                    .map_err(FhirError::from)?;
                check_valid(&value).map_err(|e| e.within(&format!("{at}.resource")))?;
                let Value::Object(map) = value else {
                    unreachable!("rewriting keeps an object")
                };
                let checked = super::check_replaceable(app, ctx, resource_type, id).await?;
                let (version, expected) = match super::pinned_write(*if_match, checked, &at)? {
                    Some(pinned) => pinned,
                    None => match revisions.get(&stream_name(resource_type, id)).copied() {
                        Some(Some(rev)) => (rev + 2, ExpectedRevision::Exact(rev)),
                        // Every such stream was looked up above.
                        _ => (1, ExpectedRevision::NoStream),
                    },
                };
                let metadata = store::event_metadata(ctx, correlation, now);
                let p =
                    store::prepare_put(&map, resource_type, id, version, expected, now, metadata)?;
                (p, if_match.is_some())
            }
            Plan::Delete(current) => {
                let metadata = store::event_metadata(ctx, correlation, now);
                (store::prepare_delete(current, now, metadata)?, false)
            }
            Plan::Answer(_) | Plan::Read(_) => continue,
        };
        if !streams.insert(prepared.0.write.stream.clone()) {
            return Err(FhirError::BadRequest(format!(
                "{at}: {}/{} is touched by more than one entry of the transaction",
                prepared.0.resource_type, prepared.0.id
            )));
        }
        writes.push((i, prepared.0, prepared.1));
    }
    if !writes.is_empty() {
        let batch = writes.iter().map(|(_, p, _)| p.write.clone()).collect();
        match app.log.append_multi(batch).await {
            Ok(results) => {
                if let Some(last) = results.iter().map(|r| r.position).max() {
                    await_projections(app, last).await?;
                }
            }
            Err(EventLogError::WrongExpectedVersion { stream, .. }) => {
                let (i, p, had_if_match) = writes
                    .iter()
                    .find(|(_, p, _)| p.write.stream == stream)
                    .map(|(i, p, m)| (*i, p, *m))
                    .ok_or_else(|| FhirError::Internal("conflict on an unknown stream".into()))?;
                let message = format!(
                    "Bundle.entry[{i}]: {}/{} was changed by another request; nothing was written",
                    p.resource_type, p.id
                );
                return Err(if had_if_match {
                    FhirError::PreconditionFailed(message)
                } else {
                    FhirError::Conflict(message)
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Responses, in the Bundle's own order.
    let mut responses: Vec<Option<(FhirResponse, Option<String>)>> =
        (0..entries.len()).map(|_| None).collect();
    for (i, p, _) in &writes {
        let status = if p.deleted {
            StatusCode::NO_CONTENT
        } else if p.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        // A transaction answers with the outcome of each entry; the resources only on request.
        let r = super::write_response(p, status, Some(prefer.unwrap_or(Return::Minimal)));
        responses[*i] = Some((r, entries[*i].full_url.clone()));
    }
    for &i in &order {
        match plans[i].take() {
            Some(Plan::Answer(r)) => responses[i] = Some((r, entries[i].full_url.clone())),
            Some(Plan::Read(request)) => {
                let r = dispatch(app, ctx, request)
                    .await
                    .unwrap_or_else(|e| FhirResponse::from_error(&e));
                responses[i] = Some((r, None));
            }
            _ => {}
        }
    }
    let out: Vec<Value> = responses
        .into_iter()
        .map(|r| match r {
            Some((r, full_url)) => response_entry(base, &r, full_url.as_deref()),
            None => json!({"response": {"status": "200 OK"}}),
        })
        .collect();
    Ok(FhirResponse::json(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "transaction-response", "entry": out}),
    ))
}

/// Decides what entry `entry` does, resolving conditional criteria against the state before
/// the transaction, and records the `Type/id` its fullUrl stands for.
async fn plan_entry(
    app: &App,
    ctx: &AccessContext,
    entry: &mut Entry,
    ids: &mut HashMap<String, String>,
) -> Result<Plan, FhirError> {
    let route = entry.route.clone().ok_or_else(|| {
        FhirError::NotImplemented("searches inside a transaction are not supported yet".into())
    })?;
    let mut resource = || -> Result<Map<String, Value>, FhirError> {
        match entry.resource.take() {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(FhirError::BadRequest("this entry needs a resource".into())),
        }
    };
    let check_type = |m: &Map<String, Value>, t: &str| -> Result<(), FhirError> {
        if m.get("resourceType").and_then(Value::as_str) == Some(t) {
            Ok(())
        } else {
            Err(FhirError::BadRequest(format!(
                "resource is not a {t} as request.url says"
            )))
        }
    };
    let if_match = match &entry.conditions.if_match {
        Some(tag) => Some(fhir_rest::parse_etag(tag).ok_or_else(|| {
            FhirError::BadRequest("ifMatch must be a version ETag like W/\"3\"".into())
        })?),
        None => None,
    };
    let mut record = |t: &str, id: &str| {
        if let Some(full_url) = &entry.full_url {
            ids.insert(full_url.clone(), format!("{t}/{id}"));
        }
    };
    match route {
        Route::Create(t) => {
            ctx.check(Interaction::Create, Some(&t), None)?;
            let m = resource()?;
            check_type(&m, &t)?;
            if let Some(criteria) = &entry.conditions.if_none_exist {
                let found = conditional::matching_ids(app, ctx, &t, criteria).await?;
                match found.as_slice() {
                    [] => {}
                    [id] => {
                        record(&t, id);
                        let existing = store::current(app.log.as_ref(), &t, id)
                            .await?
                            .ok_or_else(|| FhirError::Internal("a match vanished".into()))?;
                        let mut r =
                            FhirResponse::new(StatusCode::OK, Body::Raw(existing.body.clone()));
                        r.version = Some(existing.version());
                        r.last_modified_ms = Some(existing.last_updated_ms);
                        r.location = Some(existing.versioned_reference());
                        return Ok(Plan::Answer(r));
                    }
                    _ => {
                        return Err(FhirError::PreconditionFailed(format!(
                            "ifNoneExist matches {} resources",
                            found.len()
                        )))
                    }
                }
            }
            let id = store::new_id();
            record(&t, &id);
            Ok(Plan::Put {
                resource_type: t,
                id,
                resource: m,
                if_match: None,
            })
        }
        Route::Update(t, id) | Route::Patch(t, id) if entry.method == EntryMethod::Put => {
            ctx.check(Interaction::Update, Some(&t), None)?;
            if !is_valid_id(&id) {
                return Err(FhirError::BadRequest(
                    "request.url has an invalid id".into(),
                ));
            }
            let m = resource()?;
            check_type(&m, &t)?;
            match m.get("id") {
                // A urn:uuid fullUrl resource may leave the id out; a given id must agree.
                Some(Value::String(body_id)) if body_id != &id => {
                    return Err(FhirError::BadRequest(
                        "resource.id does not match the id in request.url".into(),
                    ))
                }
                _ => {}
            }
            record(&t, &id);
            Ok(Plan::Put {
                resource_type: t,
                id,
                resource: m,
                if_match,
            })
        }
        Route::Patch(t, id) if entry.method == EntryMethod::Patch => {
            ctx.check(Interaction::Update, Some(&t), None)?;
            if !is_valid_id(&id) {
                return Err(FhirError::BadRequest(
                    "request.url has an invalid id".into(),
                ));
            }
            let payload = match entry.resource.clone() {
                Some(v) => Payload::Json(v),
                None => Payload::None,
            };
            let operations = super::patch::operations(&payload)?;
            let (m, version) =
                super::patch::patched(app, ctx, &t, &id, &operations, if_match).await?;
            record(&t, &id);
            Ok(Plan::Put {
                resource_type: t,
                id,
                resource: m,
                if_match: Some(version),
            })
        }
        Route::ConditionalUpdate(t) => {
            ctx.check(Interaction::Update, Some(&t), None)?;
            let m = resource()?;
            check_type(&m, &t)?;
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&entry.query)
                .finish();
            let found = conditional::matching_ids(app, ctx, &t, &query).await?;
            let id = match found.as_slice() {
                [] => match m.get("id").and_then(Value::as_str) {
                    Some(id) if is_valid_id(id) => id.to_owned(),
                    _ => store::new_id(),
                },
                [one] => one.clone(),
                _ => {
                    return Err(FhirError::PreconditionFailed(format!(
                        "the conditional update matches {} resources",
                        found.len()
                    )))
                }
            };
            record(&t, &id);
            Ok(Plan::Put {
                resource_type: t,
                id,
                resource: m,
                if_match,
            })
        }
        Route::Delete(t, id) => {
            ctx.check(Interaction::Delete, Some(&t), None)?;
            plan_delete(app, &t, &id).await
        }
        Route::ConditionalDelete(t) => {
            ctx.check(Interaction::Delete, Some(&t), None)?;
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&entry.query)
                .finish();
            let found = conditional::matching_ids(app, ctx, &t, &query).await?;
            match found.as_slice() {
                [] => Ok(Plan::Answer(FhirResponse::new(
                    StatusCode::NO_CONTENT,
                    Body::None,
                ))),
                [id] => plan_delete(app, &t, id).await,
                _ => Err(FhirError::PreconditionFailed(format!(
                    "the conditional delete matches {} resources",
                    found.len()
                ))),
            }
        }
        route @ (Route::Read(..)
        | Route::VRead(..)
        | Route::HistoryInstance(..)
        | Route::HistoryType(..)
        | Route::HistorySystem
        | Route::Capabilities)
            if matches!(entry.method, EntryMethod::Get | EntryMethod::Head) =>
        {
            Ok(Plan::Read(FhirRequest {
                method: Method::GET,
                route,
                query: std::mem::take(&mut entry.query),
                conditions: entry.conditions.clone(),
                prefer: None,
                payload: Payload::None,
            }))
        }
        Route::UnknownType(t) => Err(unknown_type(&t)),
        Route::Bundle => Err(FhirError::BadRequest(
            "a transaction cannot contain another Bundle".into(),
        )),
        _ => Err(FhirError::BadRequest(format!(
            "{} {:?} is not allowed in a transaction",
            entry.method.as_str(),
            route_name(entry.route.as_ref())
        ))),
    }
}

fn route_name(route: Option<&Route>) -> &'static str {
    match route {
        Some(Route::Patch(..)) => "patch",
        Some(Route::Validate(..)) => "$validate",
        _ => "this request",
    }
}

async fn plan_delete(app: &App, t: &str, id: &str) -> Result<Plan, FhirError> {
    let current = if is_valid_id(id) {
        store::current(app.log.as_ref(), t, id).await?
    } else {
        None
    };
    Ok(match current {
        Some(c) if !c.deleted => Plan::Delete(c),
        Some(c) => {
            let mut r = FhirResponse::new(StatusCode::NO_CONTENT, Body::None);
            r.version = Some(c.version());
            Plan::Answer(r)
        }
        None => Plan::Answer(FhirResponse::new(StatusCode::NO_CONTENT, Body::None)),
    })
}

/// A `Bundle.entry` of a transaction-response or batch-response.
fn response_entry(base: &str, r: &FhirResponse, full_url: Option<&str>) -> Value {
    let mut response = Map::new();
    let status = format!(
        "{} {}",
        r.status.as_u16(),
        r.status.canonical_reason().unwrap_or("")
    );
    response.insert("status".into(), json!(status.trim()));
    if let Some(location) = &r.location {
        response.insert("location".into(), json!(location));
    }
    if let Some(v) = r.version {
        response.insert("etag".into(), json!(fhir_rest::etag(v)));
    }
    if let Some(ms) = r.last_modified_ms {
        response.insert("lastModified".into(), json!(store::instant(ms)));
    }
    let mut entry = Map::new();
    let body = r.body.to_value();
    if r.status.is_client_error() || r.status.is_server_error() {
        if let Some(outcome) = body {
            response.insert("outcome".into(), outcome);
        }
    } else if let Some(resource) = body {
        if let Some(location) = &r.location {
            let mut parts = location.split('/');
            if let (Some(t), Some(id)) = (parts.next(), parts.next()) {
                entry.insert("fullUrl".into(), json!(format!("{base}/{t}/{id}")));
            }
        }
        entry.insert("resource".into(), resource);
    }
    let _ = full_url;
    entry.insert("response".into(), Value::Object(response));
    Value::Object(entry)
}
