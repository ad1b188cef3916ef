//! history at instance (`[type]/[id]/_history`), type (`[type]/_history`) and system
//! (`/_history`) level, with `_count`, `_since`, `_at` and paging.
//!
//! Every level is newest first, as FHIR wants. Instance history is a backwards stream read,
//! paged by revision; type and system history read the log's `$all` backwards, filtered to
//! resource events (and the type's category), paged by position. Both cursors name a place in
//! the log, so a page never shifts when writes continue.

use serde_json::{json, Map, Value};
use sphere_domain::resource::{is_resource_event, is_valid_id, RESOURCE_EVENTS};
use warp::http::StatusCode;

use super::super::access::{AccessContext, Interaction};
use super::super::format::FhirResponse;
use super::super::outcome::FhirError;
use super::super::request::FhirRequest;
use super::super::store::{self, StoredVersion};
use crate::app::App;
use crate::eventlog::{Direction, EventFilter, Position, StreamStart};

const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

pub async fn history(
    app: &App,
    ctx: &AccessContext,
    request: &FhirRequest,
    resource_type: Option<&str>,
    id: Option<&str>,
) -> Result<FhirResponse, FhirError> {
    let interaction = match (resource_type, id) {
        (Some(_), Some(_)) => Interaction::HistoryInstance,
        (Some(_), None) => Interaction::HistoryType,
        _ => Interaction::HistorySystem,
    };
    ctx.check(interaction, resource_type, None)?;
    let count = match request.param("_count") {
        Some(c) => c
            .parse::<usize>()
            .map_err(|_| FhirError::BadRequest("_count must be a whole number".into()))?
            .min(MAX_COUNT),
        None => DEFAULT_COUNT,
    };
    let since = time_param(request, "_since")?;
    let at = time_param(request, "_at")?;
    let base = app.config.fhir_base_url();
    let (versions, next) = match (resource_type, id) {
        (Some(t), Some(id)) => instance(app, ctx, t, id, request, count, since, at).await?,
        _ => {
            if at.is_some() {
                return Err(FhirError::BadRequest(
                    "_at is supported on instance history only".into(),
                ));
            }
            log_level(app, ctx, resource_type, request, count, since).await?
        }
    };
    let entries = versions
        .iter()
        .map(|v| entry(&base, v))
        .collect::<Result<Vec<_>, _>>()?;
    let path = match (resource_type, id) {
        (Some(t), Some(id)) => format!("{base}/{t}/{id}/_history"),
        (Some(t), None) => format!("{base}/{t}/_history"),
        _ => format!("{base}/_history"),
    };
    let self_query = request.search_query();
    let mut links = vec![json!({"relation": "self", "url": join(&path, &self_query)})];
    if let Some(cursor) = next {
        let mut params: Vec<(String, String)> = request
            .query
            .iter()
            .filter(|(k, _)| k != "_page")
            .cloned()
            .collect();
        params.push(("_page".into(), cursor));
        let q = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        links.push(json!({"relation": "next", "url": join(&path, &q)}));
    }
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("type".into(), json!("history"));
    bundle.insert("timestamp".into(), json!(store::instant(store::now_ms())));
    bundle.insert("link".into(), Value::Array(links));
    bundle.insert("entry".into(), Value::Array(entries));
    Ok(FhirResponse::json(StatusCode::OK, Value::Object(bundle)))
}

fn join(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

fn time_param(request: &FhirRequest, name: &str) -> Result<Option<i64>, FhirError> {
    match request.param(name) {
        None => Ok(None),
        Some(v) => store::parse_fhir_time(v).map(Some).ok_or_else(|| {
            FhirError::BadRequest(format!(
                "{name} must be a FHIR instant like 2024-01-01T00:00:00Z"
            ))
        }),
    }
}

/// Whether the grant may see `v`: its type first (system history spans types), then its
/// content when the grant depends on it (patient compartment, granular scopes).
fn visible(ctx: &AccessContext, v: &StoredVersion) -> Result<bool, FhirError> {
    if v.deleted && ctx.checks_each_resource(Interaction::Read, &v.resource_type) {
        // No content to prove whose it was: not shown to a content-scoped grant.
        return Ok(false);
    }
    match ctx.check_stored(Interaction::Read, &v.resource_type, &v.body) {
        Ok(()) => Ok(true),
        Err(FhirError::Denied(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Most versions a page looks at while filling itself with versions the grant may see.
/// A sparse grant (one patient's resources in the whole log) ends a page there, with a
/// `next` link to go on from where it stopped.
const SCAN_BUDGET: usize = 10_000;

/// Versions are read in batches of at least this many.
const SCAN_BATCH: usize = 256;

/// Fills a page with the versions the grant may see, newest first. A `next` cursor is given
/// only when a further visible version exists (so paging does not tell a grant that versions
/// it may not see exist), or when the scan budget ran out before the page was full.
struct Page {
    count: usize,
    shown: Vec<StoredVersion>,
    scanned: usize,
}

enum Fill {
    /// The page is full and one more visible version exists: its place.
    Full(StoredVersion),
    /// The scan budget is spent.
    Budget,
    /// Keep reading.
    More,
}

impl Page {
    fn new(count: usize) -> Self {
        Self {
            count,
            shown: Vec::with_capacity(count.min(SCAN_BATCH)),
            scanned: 0,
        }
    }

    fn offer(&mut self, ctx: &AccessContext, v: StoredVersion) -> Result<Fill, FhirError> {
        self.scanned += 1;
        if visible(ctx, &v)? {
            if self.shown.len() == self.count {
                return Ok(Fill::Full(v));
            }
            self.shown.push(v);
        }
        Ok(if self.scanned >= SCAN_BUDGET {
            Fill::Budget
        } else {
            Fill::More
        })
    }
}

/// Newest first; the `_page` cursor is the revision to continue from (inclusive).
#[allow(clippy::too_many_arguments)]
async fn instance(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    id: &str,
    request: &FhirRequest,
    count: usize,
    since: Option<i64>,
    at: Option<i64>,
) -> Result<(Vec<StoredVersion>, Option<String>), FhirError> {
    if !is_valid_id(id) {
        return Err(super::read::not_found(resource_type, id));
    }
    let mut start = match request.param("_page") {
        Some(p) => StreamStart::Revision(p.parse().map_err(|_| {
            FhirError::BadRequest("_page is not a cursor this server issued".into())
        })?),
        None => StreamStart::Origin,
    };
    let stream = sphere_domain::resource::stream_name(resource_type, id);
    let mut page = Page::new(count);
    let mut first = true;
    // The first read is what an unrestricted grant needs; later ones larger.
    let mut batch = count.saturating_add(1);
    loop {
        let events = app
            .log
            .read_stream(&stream, Direction::Backwards, start, batch)
            .await?;
        if first && events.is_empty() && start == StreamStart::Origin {
            return Err(super::read::not_found(resource_type, id));
        }
        if first && count == 0 && at.is_none() {
            return Ok((Vec::new(), None));
        }
        first = false;
        let exhausted = events.len() < batch;
        batch = batch.max(SCAN_BATCH);
        let mut oldest = None;
        for v in events.into_iter().filter_map(StoredVersion::from_event) {
            oldest = Some(v.revision);
            if let Some(at) = at {
                // The one version in effect at `at`: the newest written at or before it.
                if v.last_updated_ms <= at {
                    let shown = if visible(ctx, &v)? { vec![v] } else { vec![] };
                    return Ok((shown, None));
                }
                continue;
            }
            // Versions of one stream are newest first in time too: the first one older
            // than `_since` ends the history.
            if since.is_some_and(|since| v.last_updated_ms < since) {
                return Ok((page.shown, None));
            }
            let next = match page.offer(ctx, v)? {
                Fill::Full(next) => next.revision,
                Fill::Budget => match oldest.and_then(|r| r.checked_sub(1)) {
                    Some(r) => r,
                    None => return Ok((page.shown, None)),
                },
                Fill::More => continue,
            };
            return Ok((page.shown, Some(next.to_string())));
        }
        match oldest.and_then(|r| r.checked_sub(1)) {
            Some(r) if !exhausted => start = StreamStart::Revision(r),
            _ => return Ok((page.shown, None)),
        }
    }
}

/// Newest first, by log position read backwards; the `_page` cursor is the position the page
/// ended at (the next page reads strictly before it), so pages stay stable while writes
/// continue. `_since` ends the history at the first version older than the instant.
async fn log_level(
    app: &App,
    ctx: &AccessContext,
    resource_type: Option<&str>,
    request: &FhirRequest,
    count: usize,
    since: Option<i64>,
) -> Result<(Vec<StoredVersion>, Option<String>), FhirError> {
    let filter = EventFilter {
        categories: resource_type
            .map(|t| vec![t.to_owned()])
            .unwrap_or_default(),
        event_types: RESOURCE_EVENTS.map(String::from).to_vec(),
        ..EventFilter::default()
    };
    let mut before = match request.param("_page") {
        Some(p) => Some(Position(p.parse().map_err(|_| {
            FhirError::BadRequest("_page is not a cursor this server issued".into())
        })?)),
        None => None,
    };
    if count == 0 {
        return Ok((Vec::new(), None));
    }
    let mut page = Page::new(count);
    // The first read is what an unrestricted grant needs; later ones larger.
    let mut batch = count.saturating_add(1);
    loop {
        let events = app.log.read_all_backwards(before, &filter, batch).await?;
        let exhausted = events.len() < batch;
        batch = batch.max(SCAN_BATCH);
        for event in events {
            if since.is_some_and(|since| store_time(&event) < since) {
                return Ok((page.shown, None));
            }
            before = Some(event.position);
            if !is_resource_event(&event.event_type) {
                continue;
            }
            let Some(v) = StoredVersion::from_event(event) else {
                continue;
            };
            match page.offer(ctx, v)? {
                // The next page reads strictly before the last version shown.
                Fill::Full(_) => {
                    let next = page.shown.last().map(|v| v.position.0.to_string());
                    return Ok((page.shown, next));
                }
                Fill::Budget => return Ok((page.shown, before.map(|p| p.0.to_string()))),
                Fill::More => {}
            }
        }
        if exhausted {
            return Ok((page.shown, None));
        }
    }
}

fn store_time(event: &crate::eventlog::RecordedEvent) -> i64 {
    event
        .metadata
        .extra
        .as_ref()
        .and_then(|e| e.get("lastUpdatedMs"))
        .and_then(Value::as_i64)
        .unwrap_or(event.metadata.commit_ms)
}

fn entry(base: &str, v: &StoredVersion) -> Result<Value, FhirError> {
    let (method, url, status) = if v.deleted {
        (
            "DELETE",
            format!("{}/{}", v.resource_type, v.id),
            "204 No Content",
        )
    } else if v.revision == 0 {
        ("POST", v.resource_type.clone(), "201 Created")
    } else {
        ("PUT", format!("{}/{}", v.resource_type, v.id), "200 OK")
    };
    let mut e = Map::new();
    e.insert(
        "fullUrl".into(),
        json!(format!("{base}/{}/{}", v.resource_type, v.id)),
    );
    if !v.deleted {
        let resource: Value = serde_json::from_slice(&v.body)
            .map_err(|_| FhirError::Internal("a stored resource is not JSON".into()))?;
        e.insert("resource".into(), resource);
    }
    e.insert("request".into(), json!({"method": method, "url": url}));
    e.insert(
        "response".into(),
        json!({
            "status": status,
            "etag": sphere_domain::fhir_rest::etag(v.version()),
            "lastModified": store::instant(v.last_updated_ms),
        }),
    );
    Ok(Value::Object(e))
}
