//! `GET Patient/{id}/$everything`: the patient's compartment plus the resources those
//! reference (practitioners, organizations, medications...), with `_since`, `_type`,
//! `_count` and cursor paging (ordered by type and id; the cursor is the last `Type/id`).
//! Only what the asker's grant may see is counted, returned or followed.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use sphere_domain::fhir::search_query::{DEFAULT_COUNT, MAX_COUNT};
use sphere_domain::fhir::search_value::{self, RefTarget};
use sphere_projections::search_index::SearchIndex;
use warp::http::HeaderMap;

use super::bundle::link_url;
use super::{link_base, wait_for_index, SearchError};
use crate::app::App;
use crate::fhir::access::{AccessContext, Interaction};

pub(super) async fn everything(
    app: &Arc<App>,
    headers: &HeaderMap,
    ctx: &AccessContext,
    patient: &str,
    pairs: Vec<(String, String)>,
) -> Result<Bytes, SearchError> {
    ctx.check(Interaction::Operation("$everything"), Some("Patient"), None)?;
    // A patient-only grant reaches its own patient's record, as `Patient/{id}/[type]` does.
    if ctx
        .confined_to_patient(Interaction::SearchType, "Patient")
        .is_some_and(|own| own != patient)
    {
        return Err(SearchError::Forbidden(
            "insufficient_scope: outside the patient in context".into(),
        ));
    }
    let mut types = Vec::new();
    let mut since = None;
    let mut count = DEFAULT_COUNT;
    let mut cursor = None;
    for (k, v) in &pairs {
        match k.as_str() {
            "_type" => types.extend(v.split(',').filter(|t| !t.is_empty()).map(str::to_owned)),
            "_since" => {
                since = Some(
                    search_value::parse_date(v)
                        .ok_or_else(|| {
                            SearchError::BadRequest(format!("_since={v:?} is not an instant"))
                        })?
                        .low,
                )
            }
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| SearchError::BadRequest(format!("_count={v:?} is not a number")))?
                    .min(MAX_COUNT)
            }
            "_cursor" => cursor = Some(v.clone()),
            _ => {}
        }
    }
    wait_for_index(app).await?;
    let index = app.search.clone();
    let base = link_base(app, headers);
    let patient = patient.to_owned();
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        run(
            &index,
            &ctx,
            &patient,
            &types,
            since,
            count,
            cursor.as_deref(),
            &base,
            &pairs,
        )
    })
    .await
    .map_err(|e| SearchError::Internal(e.to_string()))?
}

#[allow(clippy::too_many_arguments)]
fn run(
    index: &SearchIndex,
    ctx: &AccessContext,
    patient: &str,
    types: &[String],
    since: Option<i64>,
    count: usize,
    cursor: Option<&str>,
    base: &str,
    pairs: &[(String, String)],
) -> Result<Bytes, SearchError> {
    let snapshot = index.snapshot();
    if snapshot.get("Patient", patient)?.is_none() {
        return Err(SearchError::NotFound(format!(
            "Patient/{patient} is not known"
        )));
    }
    let hits = snapshot.compartment(patient, types, since)?;
    let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
    let mut referenced: BTreeSet<(String, String)> = BTreeSet::new();
    // Only what the grant may see is counted, paged and followed: `total` and the links say
    // nothing of the rest of the record.
    for hit in &hits {
        let stored = snapshot.load(hit.address)?;
        let Ok(json) = serde_json::from_slice::<Value>(&stored.json) else {
            continue;
        };
        if visible(ctx, &hit.resource_type, &json) {
            keys.insert((hit.resource_type.clone(), hit.id.clone()));
            collect_references(&json, index.base_url(), &mut referenced);
        }
    }
    // Referenced resources outside the compartment (never other patients' records).
    for (t, id) in referenced {
        if sphere_domain::fhir::in_patient_compartment(&t)
            || keys.contains(&(t.clone(), id.clone()))
        {
            continue;
        }
        if !types.is_empty() && !types.contains(&t) {
            continue;
        }
        if let Some(r) = snapshot.get(&t, &id)? {
            let seen =
                serde_json::from_slice::<Value>(&r.json).is_ok_and(|json| visible(ctx, &t, &json));
            if seen && since.is_none_or(|s| r.last_updated >= s) {
                keys.insert((t, id));
            }
        }
    }
    let all: Vec<(String, String)> = keys.into_iter().collect();
    let start = match cursor {
        Some(c) => {
            let (t, id) = c
                .split_once('/')
                .ok_or_else(|| SearchError::BadRequest("_cursor is not Type/id".into()))?;
            all.partition_point(|(kt, kid)| (kt.as_str(), kid.as_str()) <= (t, id))
        }
        None => 0,
    };
    let end = (start + count).min(all.len());
    let path = format!("Patient/{patient}/$everything");
    let mut links = vec![json!({"relation": "self", "url": link_url(base, &path, pairs, cursor)})];
    if end < all.len() && end > start {
        let (t, id) = &all[end - 1];
        links.push(json!({"relation": "next", "url": link_url(base, &path, pairs, Some(&format!("{t}/{id}")))}));
    }
    let mut out = String::new();
    out.push_str(&format!(
        r#"{{"resourceType":"Bundle","type":"searchset","total":{},"link":{},"entry":["#,
        all.len(),
        Value::Array(links)
    ));
    let mut first = true;
    for (t, id) in &all[start..end] {
        let Some(r) = snapshot.get(t, id)? else {
            continue;
        };
        let Some(r) = super::bundle::allowed(ctx, vec![r]).pop() else {
            continue;
        };
        if !first {
            out.push(',');
        }
        first = false;
        let text = std::str::from_utf8(&r.json)
            .map_err(|e| SearchError::Internal(format!("stored resource is not UTF-8: {e}")))?;
        out.push_str(&format!(
            r#"{{"fullUrl":{},"resource":{text},"search":{{"mode":"match"}}}}"#,
            Value::String(format!("{base}/{t}/{id}"))
        ));
    }
    out.push_str("]}");
    Ok(Bytes::from(out))
}

/// Whether the grant may see this resource of the record.
fn visible(ctx: &AccessContext, resource_type: &str, resource: &Value) -> bool {
    ctx.check(Interaction::SearchType, Some(resource_type), Some(resource))
        .is_ok()
}

/// Every local `reference` anywhere in `value`.
fn collect_references(value: &Value, base: &str, out: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(obj) => {
            for (k, v) in obj {
                if k == "reference" {
                    if let Some(RefTarget::Local { resource_type, id }) = v
                        .as_str()
                        .and_then(|r| search_value::parse_reference(r, base))
                    {
                        out.insert((resource_type, id));
                    }
                } else {
                    collect_references(v, base, out);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_references(v, base, out);
            }
        }
        _ => {}
    }
}
