//! `_typeFilter`: FHIR search queries (`Observation?category=laboratory`) that narrow an export.
//! A resource of a type with queries is exported only if it matches at least one of them;
//! types without a query are not narrowed.
//!
//! The queries are parsed by the FHIR search parser (`search_query`) and evaluated on each
//! exported version's JSON with the search index's own extraction and comparison rules
//! (`search_index::evaluate`): the worker reads versions from the log, not from the index, so
//! it cannot ask the index. Only what can be decided on one resource is accepted: plain search
//! parameters with `:exact`, `:contains`, `:missing`, `:not` (tokens) and `:[type]`
//! (references); chains, `_has`, other modifiers and result parameters are a 400 at kick-off.

use std::collections::HashMap;

use serde_json::Value;
use sphere_domain::fhir::search_query::{self, Clause, Modifier, ParseOptions, SearchValue};
use sphere_domain::fhir::SearchParamType;
use sphere_projections::search_index::evaluate;

/// Parameters that shape a search result rather than select resources: meaningless in an
/// export, so refused.
const RESULT_PARAMETERS: &[&str] = &[
    "_count",
    "_sort",
    "_include",
    "_revinclude",
    "_summary",
    "_elements",
    "_total",
    "_cursor",
    "_contained",
    "_containedType",
    "_format",
    "_pretty",
];

/// Every `_typeFilter` of an export, parsed, by resource type.
#[derive(Debug, Default)]
pub struct TypeFilters {
    /// Each type's queries (OR-ed); each query's clauses are AND-ed.
    by_type: HashMap<String, Vec<Vec<Clause>>>,
    base_url: String,
}

impl TypeFilters {
    /// Parses `Type?query` strings; the error is the 400's message.
    pub fn parse(filters: &[String], base_url: &str) -> Result<Self, String> {
        let mut parsed = Self {
            by_type: HashMap::new(),
            base_url: base_url.to_owned(),
        };
        for filter in filters {
            let (resource_type, query) = filter.split_once('?').ok_or_else(|| {
                format!("_typeFilter {filter:?} must be a search query Type?parameters")
            })?;
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if pairs.is_empty() {
                return Err(format!("_typeFilter {filter:?} has no search parameters"));
            }
            for (name, _) in &pairs {
                let bare = name.split(':').next().unwrap_or(name);
                if RESULT_PARAMETERS.contains(&bare) {
                    return Err(format!(
                        "_typeFilter {filter:?}: {name} is not allowed in a _typeFilter"
                    ));
                }
            }
            let options = ParseOptions {
                strict: true,
                base_url: base_url.to_owned(),
            };
            let q = search_query::parse(resource_type, &pairs, &options)
                .map_err(|e| format!("_typeFilter {filter:?}: {e}"))?;
            for clause in &q.clauses {
                supported(clause).map_err(|reason| format!("_typeFilter {filter:?}: {reason}"))?;
            }
            parsed
                .by_type
                .entry(resource_type.to_owned())
                .or_default()
                .push(q.clauses);
        }
        Ok(parsed)
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty()
    }

    /// The types some filter names.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.by_type.keys().map(String::as_str)
    }

    /// Whether resources of this type are narrowed (and so must be parsed).
    pub fn applies_to(&self, resource_type: &str) -> bool {
        self.by_type.contains_key(resource_type)
    }

    /// Does `resource` pass its type's filters (any query, all of its clauses)?
    pub fn allows(&self, resource_type: &str, resource: &Value) -> bool {
        let Some(queries) = self.by_type.get(resource_type) else {
            return true;
        };
        queries.iter().any(|clauses| {
            clauses
                .iter()
                .all(|clause| self.clause_matches(clause, resource))
        })
    }

    fn clause_matches(&self, clause: &Clause, resource: &Value) -> bool {
        let Clause::Param {
            def,
            modifier,
            values,
        } = clause
        else {
            return false;
        };
        match modifier {
            Modifier::Missing(missing) => {
                let found = def.extract(resource).unwrap_or_default();
                found.is_empty() == *missing
            }
            Modifier::Not => {
                !evaluate::matches(def, &Modifier::None, values, resource, &self.base_url)
            }
            Modifier::Type(t) => {
                let narrowed: Vec<SearchValue> = values
                    .iter()
                    .map(|v| match v {
                        SearchValue::Reference(search_query::RefQuery::Local {
                            resource_type: None,
                            id,
                        }) => SearchValue::Reference(search_query::RefQuery::Local {
                            resource_type: Some(t.clone()),
                            id: id.clone(),
                        }),
                        other => other.clone(),
                    })
                    .collect();
                evaluate::matches(def, &Modifier::None, &narrowed, resource, &self.base_url)
            }
            other => evaluate::matches(def, other, values, resource, &self.base_url),
        }
    }
}

/// Whether a parsed clause can be decided on one resource's JSON.
fn supported(clause: &Clause) -> Result<(), String> {
    let Clause::Param {
        def,
        modifier,
        values,
    } = clause
    else {
        return Err("chained and _has parameters are not supported in _typeFilter".into());
    };
    if def.path.is_none() {
        return Err(format!(
            "{} cannot be evaluated on exported resources",
            def.code
        ));
    }
    let ok = match modifier {
        Modifier::None | Modifier::Missing(_) => true,
        Modifier::Exact | Modifier::Contains => def.param_type == SearchParamType::String,
        Modifier::Not => def.param_type == SearchParamType::Token,
        Modifier::Type(_) => def.param_type == SearchParamType::Reference,
        _ => false,
    };
    if !ok {
        return Err(format!(
            "the modifier {modifier:?} on {} is not supported in _typeFilter",
            def.code
        ));
    }
    if values.iter().any(|v| {
        matches!(
            v,
            SearchValue::OfType { .. } | SearchValue::Identifier { .. }
        )
    }) {
        return Err(format!("{}: this kind of value is not supported", def.code));
    }
    Ok(())
}

/// Splits a GET `_typeFilter` value into its queries: commas separate queries where the next
/// text starts a new `Type?`; other commas are OR lists inside a query (`code=a,b`).
pub fn split_queries(value: &str) -> Vec<String> {
    let mut queries: Vec<String> = Vec::new();
    for piece in value.split(',') {
        let starts_query = piece.split_once('?').is_some_and(|(t, _)| {
            !t.is_empty()
                && t.chars().all(|c| c.is_ascii_alphanumeric())
                && t.starts_with(|c: char| c.is_ascii_uppercase())
        });
        match queries.last_mut() {
            Some(last) if !starts_query => {
                last.push(',');
                last.push_str(piece);
            }
            _ => queries.push(piece.to_owned()),
        }
    }
    queries.retain(|q| !q.trim().is_empty());
    queries
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filters(f: &[&str]) -> Result<TypeFilters, String> {
        let f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
        TypeFilters::parse(&f, "https://x/fhir/r4")
    }

    #[test]
    fn comma_separated_queries_split_on_new_types_only() {
        assert_eq!(
            split_queries("Observation?code=a,b,Condition?category=problem-list-item"),
            vec![
                "Observation?code=a,b",
                "Condition?category=problem-list-item"
            ]
        );
    }

    #[test]
    fn a_resource_matches_any_query_of_its_type() {
        let f = filters(&[
            "Observation?category=laboratory",
            "Observation?status=preliminary",
            "MedicationRequest?status=active",
        ])
        .expect("valid");
        let lab = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
        let vital = json!({"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}]});
        assert!(f.allows("Observation", &lab));
        assert!(!f.allows("Observation", &vital));
        assert!(f.allows("Patient", &json!({"resourceType": "Patient"})));
        assert!(!f.allows(
            "MedicationRequest",
            &json!({"resourceType": "MedicationRequest", "status": "stopped"})
        ));
    }

    #[test]
    fn unsupported_filters_are_refused() {
        for bad in [
            "Observation",
            "Observation?",
            "Nope?x=1",
            "Observation?bogus=1",
            "Observation?_count=5",
            "Observation?subject.name=x",
            "Observation?code:text=x",
            "Observation?date=notadate",
        ] {
            assert!(filters(&[bad]).is_err(), "{bad}");
        }
    }
}
