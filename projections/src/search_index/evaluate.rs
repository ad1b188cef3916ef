//! Search semantics evaluated on a resource's JSON: the comparisons that terms cannot express
//! (date ranges by precision, numbers and quantities by significant figures, composites whose
//! components must match the same item, `:contains`). The index narrows the candidates first
//! (type, the other clauses, and "has a value for this parameter"); this decides.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sphere_domain::fhir::search_query::{Modifier, Prefix, RefQuery, SearchValue};
use sphere_domain::fhir::search_value::{self, DateRange, NumberRange, RefTarget};
use sphere_domain::fhir::{Found, SearchParamDef, SearchParamType};

/// Whether a clause on this parameter is decided here rather than by terms alone.
pub fn needs_json(def: &SearchParamDef, modifier: &Modifier) -> bool {
    matches!(
        def.param_type,
        SearchParamType::Date
            | SearchParamType::Number
            | SearchParamType::Quantity
            | SearchParamType::Composite
    ) || (def.param_type == SearchParamType::String && *modifier == Modifier::Contains)
        || def.code == "_content"
}

/// Does `resource` match any of `values` for parameter `def`?
pub fn matches(
    def: &SearchParamDef,
    modifier: &Modifier,
    values: &[SearchValue],
    resource: &Value,
    base: &str,
) -> bool {
    if matches!(def.code.as_str(), "_text" | "_content") {
        return words_match(def.code.as_str(), values, resource);
    }
    let found = def.extract(resource).unwrap_or_default();
    values.iter().any(|v| {
        if def.param_type == SearchParamType::Composite {
            let SearchValue::Composite(parts) = v else {
                return false;
            };
            return found
                .iter()
                .any(|item| composite_matches(def, parts, item.value, base));
        }
        // `ne` holds when no value equals; the others when some value matches.
        if let Some(Prefix::Ne) = prefix_of(v) {
            return !found.is_empty()
                && !found
                    .iter()
                    .any(|f| value_matches(def.param_type, modifier, &as_eq(v), f, base));
        }
        found
            .iter()
            .any(|f| value_matches(def.param_type, modifier, v, f, base))
    })
}

fn prefix_of(v: &SearchValue) -> Option<Prefix> {
    match v {
        SearchValue::Date { prefix, .. }
        | SearchValue::Number { prefix, .. }
        | SearchValue::Quantity { prefix, .. } => Some(*prefix),
        _ => None,
    }
}

fn as_eq(v: &SearchValue) -> SearchValue {
    let mut v = v.clone();
    match &mut v {
        SearchValue::Date { prefix, .. }
        | SearchValue::Number { prefix, .. }
        | SearchValue::Quantity { prefix, .. } => *prefix = Prefix::Eq,
        _ => {}
    }
    v
}

fn composite_matches(
    def: &SearchParamDef,
    parts: &[SearchValue],
    item: &Value,
    base: &str,
) -> bool {
    def.components.iter().zip(parts).all(|(component, value)| {
        let (Some(path), Some(t)) = (&component.path, component.param_type) else {
            return false;
        };
        path.evaluate(item)
            .iter()
            .any(|f| value_matches(t, &Modifier::None, value, f, base))
    })
}

/// One search value against one found value.
pub fn value_matches(
    param_type: SearchParamType,
    modifier: &Modifier,
    value: &SearchValue,
    found: &Found<'_>,
    base: &str,
) -> bool {
    match (param_type, value) {
        (SearchParamType::Date, SearchValue::Date { prefix, range }) => search_value::dates(found)
            .iter()
            .any(|r| date_matches(*prefix, range, r)),
        (SearchParamType::Number, SearchValue::Number { prefix, number }) => {
            search_value::numbers(found)
                .iter()
                .any(|n| number_matches(*prefix, number, n.value))
        }
        (
            SearchParamType::Quantity,
            SearchValue::Quantity {
                prefix,
                number,
                system,
                code,
            },
        ) => search_value::quantities(found).iter().any(|q| {
            system.as_ref().is_none_or(|s| q.system.as_ref() == Some(s))
                && code
                    .as_ref()
                    .is_none_or(|c| q.code.as_ref() == Some(c) || q.unit.as_ref() == Some(c))
                && number_matches(*prefix, number, q.number.value)
        }),
        (SearchParamType::String, SearchValue::String { folded, raw }) => {
            search_value::strings(found).iter().any(|s| match modifier {
                Modifier::Exact => s == raw,
                Modifier::Contains => search_value::normalize(s).contains(folded.as_str()),
                _ => search_value::normalize(s).starts_with(folded.as_str()),
            })
        }
        (SearchParamType::Token, SearchValue::Token { system, code }) => {
            search_value::tokens(found).iter().any(|t| {
                let system_ok = match system.as_deref() {
                    None => true,
                    Some("") => t.system.is_none(),
                    Some(s) => t.system.as_deref() == Some(s),
                };
                let code_ok = match code {
                    None => true,
                    Some(c) => t.code.as_ref().is_some_and(|tc| tc.eq_ignore_ascii_case(c)),
                };
                system_ok && code_ok && (t.code.is_some() || t.system.is_some())
            })
        }
        (SearchParamType::Token, SearchValue::String { folded, .. }) => search_value::tokens(found)
            .iter()
            .filter_map(|t| t.text.as_deref())
            .any(|text| search_value::normalize(text).starts_with(folded.as_str())),
        (SearchParamType::Reference, SearchValue::Reference(r)) => {
            search_value::references(found, base)
                .iter()
                .any(|v| match (&v.target, r) {
                    (
                        Some(RefTarget::Local { resource_type, id }),
                        RefQuery::Local {
                            resource_type: want_type,
                            id: want_id,
                        },
                    ) => id == want_id && want_type.as_ref().is_none_or(|t| t == resource_type),
                    (Some(RefTarget::Url(u)), RefQuery::Url(w)) => u == w,
                    _ => false,
                })
        }
        (SearchParamType::Uri, SearchValue::Uri(u)) => {
            search_value::uris(found).iter().any(|v| match modifier {
                Modifier::Below => v.starts_with(u.as_str()),
                Modifier::Above => u.starts_with(v.as_str()),
                _ => v == u,
            })
        }
        _ => false,
    }
}

/// FHIR R4 date comparison of a search range `p` against a value range `r`.
fn date_matches(prefix: Prefix, p: &DateRange, r: &DateRange) -> bool {
    match prefix {
        Prefix::Eq => r.low >= p.low && r.high <= p.high,
        Prefix::Ne => !(r.low >= p.low && r.high <= p.high),
        Prefix::Gt => r.high > p.high,
        Prefix::Lt => r.low < p.low,
        Prefix::Ge => r.high >= p.low,
        Prefix::Le => r.low <= p.high,
        Prefix::Sa => r.low > p.high,
        Prefix::Eb => r.high < p.low,
        Prefix::Ap => {
            // "Approximately": the search range widened by 10% of its distance from now
            // (at least a day), overlapping the value.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let gap = (now - p.low).abs().max((now - p.high).abs());
            let widen = (gap / 10).max(86_400_000);
            r.high >= p.low.saturating_sub(widen) && r.low <= p.high.saturating_add(widen)
        }
    }
}

/// FHIR R4 number comparison: `eq` is "within the precision of the search value".
fn number_matches(prefix: Prefix, p: &NumberRange, value: f64) -> bool {
    match prefix {
        Prefix::Eq => value >= p.low && value < p.high,
        Prefix::Ne => !(value >= p.low && value < p.high),
        Prefix::Gt | Prefix::Sa => value > p.value,
        Prefix::Lt | Prefix::Eb => value < p.value,
        Prefix::Ge => value >= p.value,
        Prefix::Le => value <= p.value,
        Prefix::Ap => (value - p.value).abs() <= (p.value.abs() * 0.1).max(p.high - p.low),
    }
}

/// `_text` / `_content` on the JSON, as the index answers them: every word of a value is a
/// prefix of some word of the narrative (`_text`) or of any string (`_content`).
fn words_match(code: &str, values: &[SearchValue], resource: &Value) -> bool {
    let mut texts = Vec::new();
    if code == "_text" {
        texts.extend(resource.pointer("/text/div").and_then(Value::as_str));
    } else {
        string_values(resource, &mut texts);
    }
    let mut have = Vec::new();
    for t in texts {
        search_value::words(t, &mut have);
    }
    values.iter().any(|v| {
        let SearchValue::String { raw, .. } = v else {
            return false;
        };
        let mut wanted = Vec::new();
        search_value::words(raw, &mut wanted);
        wanted
            .iter()
            .all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
    })
}

/// Every string value in `value` (not the keys): what `_content` searches.
fn string_values<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| string_values(v, out)),
        Value::Object(map) => map.values().for_each(|v| string_values(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> DateRange {
        search_value::parse_date(s).unwrap()
    }

    #[test]
    fn date_prefixes_follow_range_semantics() {
        let day = d("2024-03-15");
        assert!(date_matches(Prefix::Eq, &d("2024-03"), &day));
        assert!(!date_matches(Prefix::Eq, &d("2024-03-16"), &day));
        assert!(date_matches(Prefix::Ne, &d("2024-03-16"), &day));
        assert!(date_matches(Prefix::Gt, &d("2024-03-14"), &day));
        assert!(!date_matches(Prefix::Gt, &d("2024-03-15"), &day));
        assert!(date_matches(Prefix::Ge, &d("2024-03-15"), &day));
        assert!(date_matches(Prefix::Lt, &d("2024-03-16"), &day));
        assert!(!date_matches(Prefix::Lt, &d("2024-03-15"), &day));
        assert!(date_matches(Prefix::Le, &d("2024-03-15"), &day));
        assert!(date_matches(Prefix::Sa, &d("2024-03-14"), &day));
        assert!(date_matches(Prefix::Eb, &d("2024-03-16"), &day));
        assert!(date_matches(Prefix::Ap, &d("2024-03-14"), &day));
        // A Period that is open at its end is after anything.
        let open = DateRange {
            low: d("2020").low,
            high: i64::MAX,
        };
        assert!(date_matches(Prefix::Gt, &d("2030"), &open));
    }

    #[test]
    fn numbers_compare_within_their_precision() {
        let p = search_value::parse_number("100").unwrap();
        assert!(number_matches(Prefix::Eq, &p, 100.4));
        assert!(!number_matches(Prefix::Eq, &p, 100.5));
        assert!(number_matches(Prefix::Gt, &p, 100.1));
        assert!(number_matches(Prefix::Le, &p, 100.0));
        assert!(number_matches(Prefix::Ap, &p, 109.0));
        assert!(!number_matches(Prefix::Ap, &p, 111.0));
    }
}
