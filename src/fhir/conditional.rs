//! Which resources a conditional interaction's search criteria (`If-None-Exist`, `PUT
//! [type]?...`, `DELETE [type]?...`, conditional Bundle entries) match.
//!
//! The search index (`src/fhir/search/`, being built alongside) is the right tool for this;
//! until it offers a matcher this module answers by scanning the current versions of the
//! type in the log and evaluating the criteria with the domain's search-parameter table.
//! That is exact for `_id`, token (`system|code`, `code`, `system|`), string (prefix,
//! case-insensitive) and reference (`id`, `Type/id`) parameters - what conditional writes use
//! in practice (identifiers) - and refuses other parameter types with 400. It costs a read of
//! the type's whole history, so it is bounded: past [`SCAN_LIMIT`] events it answers 412.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;
use sphere_domain::fhir::{search_parameter, SearchParamType};
use sphere_domain::resource::{is_resource_event, RESOURCE_DELETED};

use super::access::AccessContext;
use super::outcome::FhirError;
use super::request::parse_query;
use crate::app::App;
use crate::eventlog::EventFilter;

/// Most events of one type read to answer one conditional interaction.
pub const SCAN_LIMIT: usize = 200_000;
const PAGE: usize = 2_000;

/// The ids of the current `resource_type` resources matching `criteria` (a query string,
/// `identifier=sys|123&active=true`, with or without a leading `?` or `Type?`).
pub async fn matching_ids(
    app: &App,
    ctx: &AccessContext,
    resource_type: &str,
    criteria: &str,
) -> Result<Vec<String>, FhirError> {
    let _ = ctx;
    let query = criteria.split_once('?').map(|(_, q)| q).unwrap_or(criteria);
    let params: Vec<(String, String)> = parse_query(query)
        .into_iter()
        .filter(|(k, _)| !matches!(k.as_str(), "_format" | "_pretty" | "_count" | "_summary"))
        .collect();
    if params.is_empty() {
        return Err(FhirError::PreconditionFailed(
            "conditional criteria must name at least one search parameter".into(),
        ));
    }
    let criteria = compile(resource_type, &params)?;
    let filter = EventFilter::categories([resource_type]);
    let mut latest: HashMap<String, Option<Bytes>> = HashMap::new();
    let mut after = None;
    let mut scanned = 0usize;
    loop {
        let page = app.log.read_all(after, &filter, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        scanned += page.len();
        for event in page {
            if !is_resource_event(&event.event_type) {
                continue;
            }
            let id = event.stream_id().to_owned();
            let live = (event.event_type != RESOURCE_DELETED).then_some(event.data);
            latest.insert(id, live);
        }
        if scanned > SCAN_LIMIT {
            return Err(FhirError::PreconditionFailed(format!(
                "too many {resource_type} versions to evaluate conditional criteria without the search index"
            )));
        }
    }
    let mut ids = Vec::new();
    for (id, body) in latest {
        let Some(body) = body else { continue };
        let Ok(resource) = serde_json::from_slice::<Value>(&body) else {
            continue;
        };
        if criteria.iter().all(|c| c.matches(&id, &resource)) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// One parameter: any of its comma-separated values may match.
struct Criterion {
    code: String,
    kind: Kind,
    values: Vec<String>,
}

enum Kind {
    Id,
    Token,
    String,
    Reference,
}

fn compile(resource_type: &str, params: &[(String, String)]) -> Result<Vec<Criterion>, FhirError> {
    params
        .iter()
        .map(|(code, value)| {
            let values = value.split(',').map(str::to_owned).collect();
            let kind = if code == "_id" {
                Kind::Id
            } else {
                let def = search_parameter(resource_type, code).ok_or_else(|| {
                    FhirError::BadRequest(format!(
                        "{resource_type} has no search parameter {:?}",
                        code.chars().take(64).collect::<String>()
                    ))
                })?;
                match def.param_type {
                    SearchParamType::Token => Kind::Token,
                    SearchParamType::String => Kind::String,
                    SearchParamType::Reference => Kind::Reference,
                    _ => {
                        return Err(FhirError::BadRequest(format!(
                            "conditional criteria on {code} are not supported until the search index serves them; use identifier or _id"
                        )))
                    }
                }
            };
            Ok(Criterion {
                code: code.clone(),
                kind,
                values,
            })
        })
        .collect()
}

impl Criterion {
    fn matches(&self, id: &str, resource: &Value) -> bool {
        if let Kind::Id = self.kind {
            return self.values.iter().any(|v| v == id);
        }
        let resource_type = resource["resourceType"].as_str().unwrap_or("");
        let Some(def) = search_parameter(resource_type, &self.code) else {
            return false;
        };
        let found = def.extract(resource).unwrap_or_default();
        self.values.iter().any(|wanted| {
            found.iter().any(|f| match self.kind {
                Kind::Token => token_matches(f.value, wanted),
                Kind::String => string_matches(f.value, wanted),
                Kind::Reference => reference_matches(f.value, wanted),
                Kind::Id => false,
            })
        })
    }
}

fn token_matches(value: &Value, wanted: &str) -> bool {
    let (system, code) = match wanted.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, wanted),
    };
    let pair_matches = |s: Option<&str>, c: Option<&str>| -> bool {
        let system_ok = match system {
            None => true,
            Some("") => s.is_none(),
            Some(want) => s == Some(want),
        };
        system_ok && (code.is_empty() || c == Some(code))
    };
    match value {
        Value::String(s) => system.is_none_or(str::is_empty) && s == code,
        Value::Bool(b) => system.is_none() && b.to_string() == code,
        Value::Object(o) => {
            if let Some(codings) = o.get("coding").and_then(Value::as_array) {
                return codings
                    .iter()
                    .any(|c| pair_matches(c["system"].as_str(), c["code"].as_str()));
            }
            if o.contains_key("value") && !o.contains_key("code") {
                return pair_matches(
                    o.get("system").and_then(Value::as_str),
                    o.get("value").and_then(Value::as_str),
                );
            }
            pair_matches(
                o.get("system").and_then(Value::as_str),
                o.get("code").and_then(Value::as_str),
            )
        }
        _ => false,
    }
}

fn string_matches(value: &Value, wanted: &str) -> bool {
    let wanted = wanted.to_lowercase();
    let mut hit = false;
    visit_strings(value, &mut |s| hit |= s.to_lowercase().starts_with(&wanted));
    hit
}

fn visit_strings(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::String(s) => f(s),
        Value::Array(a) => a.iter().for_each(|v| visit_strings(v, f)),
        Value::Object(o) => o
            .iter()
            .filter(|(k, _)| k.as_str() != "extension" && k.as_str() != "period")
            .for_each(|(_, v)| visit_strings(v, f)),
        _ => {}
    }
}

fn reference_matches(value: &Value, wanted: &str) -> bool {
    let Some(reference) = value.get("reference").and_then(Value::as_str) else {
        return false;
    };
    reference == wanted || reference.ends_with(&format!("/{wanted}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_match_identifiers_and_codings_by_system_and_code() {
        let identifier = json!({"system": "urn:mrn", "value": "42"});
        assert!(token_matches(&identifier, "urn:mrn|42"));
        assert!(token_matches(&identifier, "42"));
        assert!(!token_matches(&identifier, "urn:other|42"));
        let concept = json!({"coding": [{"system": "http://loinc.org", "code": "1-8"}]});
        assert!(token_matches(&concept, "http://loinc.org|1-8"));
        assert!(token_matches(&concept, "http://loinc.org|"));
        assert!(!token_matches(&concept, "1-9"));
    }
}
