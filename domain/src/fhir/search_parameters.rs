//! Search-parameter definitions for the supported resource types: FHIR R4 4.0.1, overlaid by
//! US Core 6.1.0 where US Core redefines a parameter with the same code.
//!
//! Generated into `generated/search-parameters.json` by `scripts/fhir-tables/generate.mjs`.
//! The search index, the query parser and the CapabilityStatement all read this one table.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::definitions::definitions;
use super::search_path::{Found, SearchPath};

const SEARCH_PARAMETERS_JSON: &str = include_str!("generated/search-parameters.json");

/// FHIR search parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

/// Which specification defined the parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SearchParamSource {
    Fhir,
    UsCore,
}

/// One component of a composite search parameter.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchParamComponent {
    /// Canonical URL of the component's own SearchParameter.
    pub definition: String,
    /// Its code and type, resolved at generation time (None if the definition is unknown).
    pub code: Option<String>,
    #[serde(rename = "type")]
    pub param_type: Option<SearchParamType>,
    /// FHIRPath relative to the composite's expression.
    pub expression: String,
    /// `expression`, compiled at load.
    #[serde(skip)]
    pub path: Option<SearchPath>,
}

/// A search parameter as it applies to one resource type.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchParamDef {
    pub code: String,
    pub url: String,
    pub source: SearchParamSource,
    #[serde(rename = "type")]
    pub param_type: SearchParamType,
    /// FHIRPath, restricted to this resource type's branches of a shared expression.
    pub expression: Option<String>,
    /// Target resource types of a reference parameter.
    pub targets: Vec<String>,
    pub comparators: Vec<String>,
    pub modifiers: Vec<String>,
    pub multiple_or: bool,
    pub multiple_and: bool,
    pub components: Vec<SearchParamComponent>,
    /// The base parameter's URL when US Core redefines it.
    #[serde(default)]
    pub overrides: Option<String>,
    /// `Resource` or `DomainResource` for the common parameters (`_id`, `_lastUpdated`...).
    #[serde(default)]
    pub base: Option<String>,
    /// `expression`, compiled at load for this resource type (None if it uses FHIRPath beyond
    /// what [`SearchPath`] supports; today only `Patient.deceased`).
    #[serde(skip)]
    pub path: Option<SearchPath>,
}

impl SearchParamDef {
    /// The values this parameter indexes in `resource`; None when the expression did not compile
    /// (or there is none, as for `_text`).
    pub fn extract<'v>(&self, resource: &'v serde_json::Value) -> Option<Vec<Found<'v>>> {
        self.path.as_ref().map(|p| p.evaluate(resource))
    }
}

#[derive(Deserialize)]
struct RawSearchParameters {
    common: Vec<SearchParamDef>,
    by_type: HashMap<String, Vec<SearchParamDef>>,
}

struct SearchTable {
    by_type: HashMap<String, Vec<SearchParamDef>>,
    common: Vec<SearchParamDef>,
}

fn table() -> &'static SearchTable {
    static TABLE: OnceLock<SearchTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let raw: RawSearchParameters = serde_json::from_str(SEARCH_PARAMETERS_JSON)
            .expect("embedded generated/search-parameters.json parses; covered by tests");
        let defs = definitions();
        let mut by_type = raw.by_type;
        // Types without parameters of their own (Binary, OperationOutcome) still get `_id`...
        for t in &super::capability::capability().supported_types {
            by_type.entry(t.clone()).or_default();
        }
        // Each supported type gets its own parameters followed by the common ones that apply to it
        // (`_text` only to DomainResources), so callers get one slice per type.
        for (type_name, params) in by_type.iter_mut() {
            let domain = defs
                .type_def(type_name)
                .is_some_and(|t| t.base == Some("DomainResource"));
            for common in &raw.common {
                let applies = common.base.as_deref() != Some("DomainResource") || domain;
                if applies && !params.iter().any(|p| p.code == common.code) {
                    params.push(common.clone());
                }
            }
            for p in params.iter_mut() {
                p.path = p
                    .expression
                    .as_deref()
                    .and_then(|e| SearchPath::compile(e, type_name));
                for c in &mut p.components {
                    c.path = SearchPath::compile_relative(&c.expression);
                }
            }
        }
        SearchTable {
            by_type,
            common: raw.common,
        }
    })
}

/// All search parameters of a supported resource type (type-specific, then `_id`, `_lastUpdated`...).
/// Empty for types the server does not support.
pub fn search_parameters(resource_type: &str) -> &'static [SearchParamDef] {
    table()
        .by_type
        .get(resource_type)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// One search parameter by resource type and code (`Observation`, `code`).
pub fn search_parameter(resource_type: &str, code: &str) -> Option<&'static SearchParamDef> {
    search_parameters(resource_type)
        .iter()
        .find(|p| p.code == code)
}

/// The parameters that apply to every resource (`_id`, `_lastUpdated`, `_tag`, `_profile`...).
pub fn common_search_parameters() -> &'static [SearchParamDef] {
    &table().common
}

/// The resource types that have search parameters, i.e. the supported types, sorted.
pub fn searchable_types() -> Vec<&'static str> {
    let mut v: Vec<&str> = table().by_type.keys().map(String::as_str).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_has_us_core_and_base_parameters() {
        let params = search_parameters("Observation");
        let code = search_parameter("Observation", "code").expect("code");
        assert_eq!(code.param_type, SearchParamType::Token);
        assert_eq!(code.source, SearchParamSource::UsCore);
        assert!(params.iter().any(|p| p.code == "_id"));
        assert!(params.iter().any(|p| p.code == "_lastUpdated"));
        let patient = search_parameter("Observation", "patient").expect("patient");
        assert_eq!(patient.param_type, SearchParamType::Reference);
        assert!(patient.targets.iter().any(|t| t == "Patient"));
        let combo = search_parameter("Observation", "code-value-quantity").expect("composite");
        assert_eq!(combo.param_type, SearchParamType::Composite);
        assert_eq!(combo.components.len(), 2);
        assert_eq!(
            combo.components[1].param_type,
            Some(SearchParamType::Quantity)
        );
    }

    #[test]
    fn parameters_extract_their_values() {
        let obs = serde_json::json!({"resourceType": "Observation", "id": "o1",
            "subject": {"reference": "Patient/p1"}, "code": {"text": "x"}});
        let patient = search_parameter("Observation", "patient").expect("patient");
        let found = patient.extract(&obs).expect("compiled");
        assert_eq!(found.len(), 1);
        let id = search_parameter("Observation", "_id").expect("_id");
        assert_eq!(id.extract(&obs).expect("compiled")[0].value, "o1");
        let combo = search_parameter("Observation", "code-value-quantity").expect("combo");
        assert!(combo.components.iter().all(|c| c.path.is_some()));
    }

    #[test]
    fn shared_expressions_are_split_per_type() {
        // clinical-patient is shared by many types; each keeps only its own branch.
        let p = search_parameter("AllergyIntolerance", "patient").expect("patient");
        let expr = p.expression.as_deref().expect("expression");
        assert!(expr.starts_with("AllergyIntolerance."), "{expr}");
        assert!(!expr.contains("Condition."), "{expr}");
    }

    #[test]
    fn unsupported_types_have_no_parameters() {
        assert!(search_parameters("Unicorn").is_empty());
        assert!(search_parameters("Patient").len() > 20);
        assert!(searchable_types().contains(&"Group"));
        // Binary is a Resource, not a DomainResource: no _text.
        assert!(search_parameter("Binary", "_text").is_none());
        assert!(search_parameter("Patient", "_text").is_some());
        assert!(search_parameter("Binary", "_id").is_some());
    }
}
