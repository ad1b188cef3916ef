//! Executing a parsed search on one index snapshot and writing the searchset Bundle: the
//! page after (or before) the cursor, `_include`/`_revinclude`, `total`, links, `_summary`
//! and `_elements`, and an OperationOutcome entry for the parameters that were ignored.

use std::cmp::Ordering;
use std::collections::HashSet;

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use sphere_domain::fhir::search_query::{subset, IncludeSpec, SearchQuery, SummaryMode, TotalMode};
use sphere_domain::fhir::search_value::{self, RefTarget};
use sphere_domain::fhir::{search_parameter, search_parameters, SearchParamType};
use sphere_projections::search_index::{
    order_hits, DocAddress, Hit, SearchIndex, Snapshot, SortKey, StoredResource,
};

use super::SearchError;
use crate::fhir::access::{AccessContext, Interaction};

/// A search to run: the parsed query plus what links and compartments need.
pub struct SearchRequest {
    pub query: SearchQuery,
    /// The request's parameters as given, to rebuild `self`/`next`/`previous` links.
    pub pairs: Vec<(String, String)>,
    pub link_base: String,
    /// A patient id, for `Patient/{id}/[type]`.
    pub compartment: Option<String>,
    /// Who asks: every returned resource, included ones too, must pass its check.
    pub access: AccessContext,
    /// A system search (`GET [base]?_type=...`): the same parameters on the other types.
    /// `query` is the first type's and holds the result parameters.
    pub system: Option<Vec<SearchQuery>>,
    /// Whether the access history records this request, set when it runs (then the result names the patients
    /// whose data it holds; working them out reads every returned resource).
    pub recorded: bool,
}

/// Drops the resources `access` may not see (the operator sees everything).
pub(super) fn allowed(
    access: &AccessContext,
    resources: Vec<StoredResource>,
) -> Vec<StoredResource> {
    if access.is_operator() {
        return resources;
    }
    resources
        .into_iter()
        .filter(|r| {
            access
                .check_stored(Interaction::SearchType, &r.resource_type, &r.json)
                .is_ok()
        })
        .collect()
}

/// Include resolution rounds for `:iterate` (each round follows the previous round's
/// references); bounded so a reference cycle cannot loop.
const MAX_ITERATE: usize = 3;

/// Where a page starts: after the last entry of the previous page, or before the first
/// entry of the next one.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cursor {
    pub before: bool,
    pub keys: Vec<SortKey>,
    pub id: String,
}

fn key_to_json(k: &SortKey) -> Value {
    match k {
        SortKey::Missing => Value::Null,
        SortKey::Int(i) => json!({"i": i}),
        SortKey::Float(f) => json!({"f": f}),
        SortKey::Str(s) => json!({"s": s}),
    }
}

fn key_from_json(v: &Value) -> Option<SortKey> {
    if v.is_null() {
        return Some(SortKey::Missing);
    }
    if let Some(i) = v.get("i") {
        return i.as_i64().map(SortKey::Int);
    }
    if let Some(f) = v.get("f") {
        return f.as_f64().map(SortKey::Float);
    }
    v.get("s")
        .and_then(Value::as_str)
        .map(|s| SortKey::Str(s.to_owned()))
}

impl Cursor {
    pub(super) fn encode(&self) -> String {
        let v = json!({"b": self.before, "k": self.keys.iter().map(key_to_json).collect::<Vec<_>>(), "i": self.id});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    pub(super) fn decode(text: &str) -> Result<Cursor, SearchError> {
        let bad = || SearchError::BadRequest("_cursor is not a cursor this server issued".into());
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        let keys = v
            .get("k")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(key_from_json)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        Ok(Cursor {
            before: v.get("b").and_then(Value::as_bool).unwrap_or(false),
            keys,
            id: v
                .get("i")
                .and_then(Value::as_str)
                .ok_or_else(bad)?
                .to_owned(),
        })
    }
}

/// The page of `hits` (sorted) that `cursor` asks for: `(start, end)`.
pub(super) fn page_bounds(
    hits: &[Hit],
    cursor: Option<&Cursor>,
    count: usize,
    order: impl Fn(&Hit, &Hit) -> Ordering,
) -> (usize, usize) {
    let Some(c) = cursor else {
        return (0, count.min(hits.len()));
    };
    let probe = Hit {
        address: DocAddress::new(0, 0),
        resource_type: String::new(),
        id: c.id.clone(),
        keys: c.keys.clone(),
    };
    // First hit strictly after the cursor (after) / at or after it (before).
    let split = hits.partition_point(|h| {
        let o = order(h, &probe);
        if c.before {
            o == Ordering::Less
        } else {
            o != Ordering::Greater
        }
    });
    if c.before {
        (split.saturating_sub(count), split)
    } else {
        (split, (split + count).min(hits.len()))
    }
}

pub(super) fn link_url(
    base: &str,
    path: &str,
    pairs: &[(String, String)],
    cursor: Option<&str>,
) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if k != "_cursor" {
            ser.append_pair(k, v);
        }
    }
    if let Some(c) = cursor {
        ser.append_pair("_cursor", c);
    }
    let q = ser.finish();
    let url = if path.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{path}")
    };
    if q.is_empty() {
        url
    } else {
        format!("{url}?{q}")
    }
}

/// A searchset Bundle and, for the access history, what it returned.
pub(super) struct Found {
    pub body: Bytes,
    /// `Type/id` of every entry.
    pub ids: Vec<String>,
    /// The patients whose data is in the Bundle.
    pub patients: Vec<String>,
}

pub(super) fn execute(index: &SearchIndex, request: &SearchRequest) -> Result<Found, SearchError> {
    let q = &request.query;
    let snapshot = index.snapshot();
    let descending: Vec<bool> = q.sort.iter().map(|s| s.descending).collect();
    let hits = match &request.system {
        // The index counts only what the grant may see (its compartment, each match of a
        // granular grant), so `total` and the paging links agree with the entries.
        None => snapshot.search(q, request.compartment.as_deref(), &request.access)?,
        Some(others) => {
            // One list across types, ordered by the sort keys then `Type/id` (which the
            // cursor carries as its id).
            let mut hits = Vec::new();
            for query in std::iter::once(q).chain(others) {
                for mut hit in snapshot.search(query, None, &request.access)? {
                    hit.id = format!("{}/{}", hit.resource_type, hit.id);
                    hits.push(hit);
                }
            }
            hits.sort_by(|a, b| order_hits(a, b, &descending));
            hits
        }
    };
    let cursor = q.cursor.as_deref().map(Cursor::decode).transpose()?;
    let count_only = q.summary == Some(SummaryMode::Count);
    let count = if count_only { 0 } else { q.count };
    let (start, end) = page_bounds(&hits, cursor.as_ref(), count, |a, b| {
        order_hits(a, b, &descending)
    });
    let page = &hits[start..end];

    let mut matches = Vec::with_capacity(page.len());
    for hit in page {
        matches.push(snapshot.load(hit.address)?);
    }
    let matches = allowed(&request.access, matches);
    let (included, revincluded) = if matches.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        (
            resolve_includes(
                &snapshot,
                &request.access,
                &q.includes,
                &matches,
                index.base_url(),
            )?,
            allowed(
                &request.access,
                resolve_revincludes(&snapshot, &q.revincludes, &matches)?,
            ),
        )
    };

    let path = match (&request.compartment, &request.system) {
        (_, Some(_)) => String::new(),
        (Some(p), None) => format!("Patient/{p}/{}", q.resource_type),
        (None, None) => q.resource_type.clone(),
    };
    let mut links = vec![
        json!({"relation": "self", "url": link_url(&request.link_base, &path, &request.pairs, q.cursor.as_deref())}),
    ];
    if end < hits.len() && count > 0 {
        if let Some(last) = page.last() {
            let c = Cursor {
                before: false,
                keys: last.keys.clone(),
                id: last.id.clone(),
            };
            links.push(json!({"relation": "next", "url": link_url(&request.link_base, &path, &request.pairs, Some(&c.encode()))}));
        }
    }
    if start > 0 && count > 0 {
        if let Some(first) = page.first().or(hits.get(start)) {
            let c = Cursor {
                before: true,
                keys: first.keys.clone(),
                id: first.id.clone(),
            };
            links.push(json!({"relation": "previous", "url": link_url(&request.link_base, &path, &request.pairs, Some(&c.encode()))}));
        }
    }

    let mut ids = Vec::with_capacity(matches.len() + included.len() + revincluded.len());
    let mut patients: Vec<String> = Vec::new();
    for r in matches.iter().chain(&included).chain(&revincluded) {
        ids.push(format!("{}/{}", r.resource_type, r.id));
        if !request.recorded {
            continue;
        }
        for p in sphere_domain::audit::patients_in(&r.resource_type, &r.id, &r.json) {
            if !patients.contains(&p) {
                patients.push(p);
            }
        }
    }
    let mut out = String::with_capacity(1024 + matches.len() * 2048);
    out.push_str(r#"{"resourceType":"Bundle","type":"searchset""#);
    if q.total != TotalMode::None {
        out.push_str(&format!(r#","total":{}"#, hits.len()));
    }
    out.push_str(r#","link":"#);
    out.push_str(&Value::Array(links).to_string());
    out.push_str(r#","entry":["#);
    let mut first = true;
    let mut push_entry =
        |out: &mut String, r: &StoredResource, mode: &str| -> Result<(), SearchError> {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&format!(
                r#"{{"fullUrl":{},"resource":"#,
                Value::String(format!(
                    "{}/{}/{}",
                    request.link_base, r.resource_type, r.id
                ))
            ));
            write_resource(out, r, q)?;
            out.push_str(&format!(r#","search":{{"mode":"{mode}"}}}}"#));
            Ok(())
        };
    for r in &matches {
        push_entry(&mut out, r, "match")?;
    }
    for r in included.iter().chain(&revincluded) {
        push_entry(&mut out, r, "include")?;
    }
    if !q.ignored.is_empty() {
        let issues: Vec<Value> = q
            .ignored
            .iter()
            .map(|i| json!({"severity": "warning", "code": "not-supported", "diagnostics": format!("parameter {} ignored: {}", i.name, i.reason)}))
            .collect();
        let oo = json!({"resourceType": "OperationOutcome", "issue": issues});
        if !first {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"resource":{oo},"search":{{"mode":"outcome"}}}}"#
        ));
    }
    out.push_str("]}");
    Ok(Found {
        body: Bytes::from(out),
        ids,
        patients,
    })
}

/// Writes the resource as stored, or its `_summary`/`_elements` subset.
fn write_resource(
    out: &mut String,
    r: &StoredResource,
    q: &SearchQuery,
) -> Result<(), SearchError> {
    let subsetting = !q.elements.is_empty()
        || matches!(
            q.summary,
            Some(SummaryMode::True | SummaryMode::Text | SummaryMode::Data)
        );
    let text = std::str::from_utf8(&r.json)
        .map_err(|e| SearchError::Internal(format!("stored resource is not UTF-8: {e}")))?;
    if !subsetting {
        out.push_str(text);
        return Ok(());
    }
    let Value::Object(full) = serde_json::from_str::<Value>(text)
        .map_err(|e| SearchError::Internal(format!("stored resource is not JSON: {e}")))?
    else {
        return Err(SearchError::Internal(
            "stored resource is not an object".into(),
        ));
    };
    match subset(&r.resource_type, full, q.summary, &q.elements) {
        Some(reduced) => out.push_str(&Value::Object(reduced).to_string()),
        None => out.push_str(text),
    }
    Ok(())
}

/// `Type/id` of every local reference `code` (every reference parameter when None) finds.
fn references_of(
    resource_type: &str,
    json: &Value,
    code: Option<&str>,
    target: Option<&str>,
    base: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for def in search_parameters(resource_type) {
        if def.param_type != SearchParamType::Reference || code.is_some_and(|c| c != def.code) {
            continue;
        }
        for f in def.extract(json).unwrap_or_default() {
            for r in search_value::references(&f, base) {
                if let Some(RefTarget::Local { resource_type, id }) = r.target {
                    if target.is_none_or(|t| t == resource_type) {
                        out.push((resource_type, id));
                    }
                }
            }
        }
    }
    out
}

/// The resources `specs` include from `matches`, as far as `access` may see them; `:iterate`
/// follows only the references of resources it may see.
fn resolve_includes(
    snapshot: &Snapshot,
    access: &AccessContext,
    specs: &[IncludeSpec],
    matches: &[StoredResource],
    base: &str,
) -> Result<Vec<StoredResource>, SearchError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen: HashSet<(String, String)> = matches
        .iter()
        .map(|r| (r.resource_type.clone(), r.id.clone()))
        .collect();
    let mut out = Vec::new();
    let mut round: Vec<StoredResource> = matches.to_vec();
    for depth in 0..=MAX_ITERATE {
        let mut next = Vec::new();
        for r in &round {
            let Ok(json) = serde_json::from_slice::<Value>(&r.json) else {
                continue;
            };
            for spec in specs {
                if depth > 0 && !spec.iterate {
                    continue;
                }
                if spec.source_type != "*" && spec.source_type != r.resource_type {
                    continue;
                }
                if spec
                    .param
                    .as_deref()
                    .is_some_and(|p| search_parameter(&r.resource_type, p).is_none())
                {
                    continue;
                }
                for key in references_of(
                    &r.resource_type,
                    &json,
                    spec.param.as_deref(),
                    spec.target_type.as_deref(),
                    base,
                ) {
                    if seen.insert(key.clone()) {
                        if let Some(found) = snapshot.get(&key.0, &key.1)? {
                            next.push(found);
                        }
                    }
                }
            }
        }
        let next = allowed(access, next);
        if next.is_empty() {
            break;
        }
        out.extend(next.iter().cloned());
        round = next;
    }
    Ok(out)
}

fn resolve_revincludes(
    snapshot: &Snapshot,
    specs: &[IncludeSpec],
    matches: &[StoredResource],
) -> Result<Vec<StoredResource>, SearchError> {
    let targets: Vec<String> = matches
        .iter()
        .map(|r| format!("{}/{}", r.resource_type, r.id))
        .collect();
    let mut seen: HashSet<(String, String)> = matches
        .iter()
        .map(|r| (r.resource_type.clone(), r.id.clone()))
        .collect();
    let mut out = Vec::new();
    for spec in specs {
        if spec.source_type == "*" {
            continue; // every type: not supported, reported by the parser
        }
        for address in snapshot.referencing(&spec.source_type, spec.param.as_deref(), &targets)? {
            let r = snapshot.load(address)?;
            if seen.insert((r.resource_type.clone(), r.id.clone())) {
                out.push(r);
            }
        }
    }
    Ok(out)
}
