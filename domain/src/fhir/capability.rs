//! The US Core 6.1.0 server CapabilityStatement, reduced to the facts the server instantiates:
//! per-resource interactions, profiles, search parameters and combinations, includes, operations.
//!
//! Generated into `generated/capability.json`; the `/metadata` handler builds the server's
//! CapabilityStatement from this and from [`super::search_parameters()`], so they cannot drift.

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::profiles::profiles_for;
use super::search_parameters::search_parameters;

const CAPABILITY_JSON: &str = include_str!("generated/capability.json");

/// A conformance expectation (`SHALL`, `SHOULD`, `MAY`) from the capabilitystatement-expectation extension.
pub type Expectation = Option<String>;

#[derive(Debug, Clone, Deserialize)]
pub struct Interaction {
    pub code: String,
    pub expectation: Expectation,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Operation {
    pub name: String,
    pub definition: String,
    pub expectation: Expectation,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CapabilitySearchParam {
    pub name: String,
    pub definition: Option<String>,
    #[serde(rename = "type")]
    pub param_type: String,
    pub expectation: Expectation,
}

/// A combination of search parameters a server SHALL/SHOULD support together.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchCombination {
    pub expectation: Expectation,
    pub required: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CapabilityResource {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub expectation: Expectation,
    pub supported_profiles: Vec<String>,
    pub interactions: Vec<Interaction>,
    pub reference_policy: Vec<String>,
    pub search_include: Vec<String>,
    pub search_rev_include: Vec<String>,
    pub search_params: Vec<CapabilitySearchParam>,
    pub search_combinations: Vec<SearchCombination>,
    pub operations: Vec<Operation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Capability {
    /// Canonical URL of the US Core server CapabilityStatement (for `instantiates`).
    pub url: String,
    /// `ImplementationGuide` canonical with version, for `implementationGuide`.
    pub us_core_ig: String,
    pub version: String,
    pub fhir_version: String,
    pub formats: Vec<String>,
    pub patch_formats: Vec<String>,
    pub implementation_guides: Vec<String>,
    /// System-level interactions (transaction, batch, search-system, history-system).
    pub interactions: Vec<Interaction>,
    pub operations: Vec<Operation>,
    /// Every resource type this server supports (US Core types plus Group, Provenance, AuditEvent...).
    pub supported_types: Vec<String>,
    /// The US Core CapabilityStatement's resource entries.
    pub resources: Vec<CapabilityResource>,
}

impl Capability {
    pub fn resource(&self, resource_type: &str) -> Option<&CapabilityResource> {
        self.resources
            .iter()
            .find(|r| r.resource_type == resource_type)
    }
}

/// The US Core server capability table, parsed on first use.
pub fn capability() -> &'static Capability {
    static CAP: OnceLock<Capability> = OnceLock::new();
    CAP.get_or_init(|| {
        serde_json::from_str(CAPABILITY_JSON)
            .expect("embedded generated/capability.json parses; covered by tests")
    })
}

/// Does the server support this resource type (create, read, search...)?
pub fn is_supported_resource_type(name: &str) -> bool {
    capability().supported_types.iter().any(|t| t == name)
}

/// What this server instance does, beyond the tables: the values a CapabilityStatement needs
/// that only the running server knows.
#[derive(Debug, Clone)]
pub struct ServerDescription {
    /// The FHIR base URL (`https://ehr.example.org/fhir/r4`).
    pub base_url: String,
    pub software_name: String,
    pub software_version: String,
    /// `CapabilityStatement.date` (a FHIR dateTime).
    pub date: String,
    /// Type-level interactions offered on every supported type (`read`, `vread`, `search-type`...).
    pub type_interactions: Vec<String>,
    /// System-level interactions (`transaction`, `batch`, `search-system`, `history-system`).
    pub system_interactions: Vec<String>,
    /// System-level operations as (name, definition canonical), e.g. Bulk Data `$export`.
    pub system_operations: Vec<(String, String)>,
    /// Type-level operations per resource type, added to those US Core lists (`docref`).
    pub type_operations: Vec<(String, String, String)>,
    /// `rest.security`, filled in by the SMART authorization layer.
    pub security: Option<Value>,
}

/// Builds the server's CapabilityStatement from the tables: every supported type with its
/// base profile, US Core profiles, all its search parameters (with definitions), includes and
/// operations; `instantiates` the US Core server CapabilityStatement.
pub fn capability_statement(server: &ServerDescription) -> Value {
    let cap = capability();
    let resources: Vec<Value> = cap
        .supported_types
        .iter()
        .map(|t| resource_entry(cap, t, server))
        .collect();
    let mut rest = Map::new();
    rest.insert("mode".into(), json!("server"));
    if let Some(security) = &server.security {
        rest.insert("security".into(), security.clone());
    }
    rest.insert("resource".into(), Value::Array(resources));
    rest.insert(
        "interaction".into(),
        server
            .system_interactions
            .iter()
            .map(|code| json!({ "code": code }))
            .collect(),
    );
    if !server.system_operations.is_empty() {
        rest.insert(
            "operation".into(),
            server
                .system_operations
                .iter()
                .map(|(name, definition)| json!({"name": name, "definition": definition}))
                .collect(),
        );
    }
    let mut guides = vec![cap.us_core_ig.clone()];
    guides.extend(cap.implementation_guides.iter().cloned());
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": server.date,
        "publisher": server.software_name,
        "kind": "instance",
        "instantiates": [cap.url],
        "software": {"name": server.software_name, "version": server.software_version},
        "implementation": {"description": server.software_name, "url": server.base_url},
        "fhirVersion": cap.fhir_version,
        "format": ["json", "application/fhir+json"],
        "patchFormat": cap.patch_formats,
        "implementationGuide": guides,
        "rest": [Value::Object(rest)],
    })
}

fn resource_entry(cap: &Capability, resource_type: &str, server: &ServerDescription) -> Value {
    let us_core = cap.resource(resource_type);
    // US Core's list when it has one (it orders them by importance), else the table's.
    let profiles: Vec<String> = match us_core {
        Some(r) if !r.supported_profiles.is_empty() => r.supported_profiles.clone(),
        _ => profiles_for(resource_type)
            .iter()
            .map(|p| p.url.clone())
            .collect(),
    };
    let search_params: Vec<Value> = search_parameters(resource_type)
        .iter()
        .map(|p| {
            let type_name = serde_json::to_value(p.param_type).unwrap_or(Value::Null);
            json!({"name": p.code, "definition": p.url, "type": type_name})
        })
        .collect();
    let mut operations: Vec<Value> = us_core
        .map(|r| {
            r.operations
                .iter()
                .map(|o| json!({"name": o.name, "definition": o.definition}))
                .collect()
        })
        .unwrap_or_default();
    operations.extend(
        server
            .type_operations
            .iter()
            .filter(|(t, _, _)| t == resource_type)
            .map(|(_, name, definition)| json!({"name": name, "definition": definition})),
    );
    let mut entry = Map::new();
    entry.insert("type".into(), json!(resource_type));
    entry.insert(
        "profile".into(),
        json!(format!(
            "http://hl7.org/fhir/StructureDefinition/{resource_type}"
        )),
    );
    if !profiles.is_empty() {
        entry.insert("supportedProfile".into(), json!(profiles));
    }
    entry.insert(
        "interaction".into(),
        server
            .type_interactions
            .iter()
            .map(|code| json!({ "code": code }))
            .collect(),
    );
    entry.insert("versioning".into(), json!("versioned"));
    entry.insert("readHistory".into(), json!(true));
    entry.insert("updateCreate".into(), json!(true));
    entry.insert("conditionalCreate".into(), json!(true));
    entry.insert("conditionalUpdate".into(), json!(true));
    entry.insert("conditionalDelete".into(), json!("single"));
    entry.insert("referencePolicy".into(), json!(["literal", "local"]));
    if let Some(r) = us_core {
        if !r.search_include.is_empty() {
            entry.insert("searchInclude".into(), json!(r.search_include));
        }
        if !r.search_rev_include.is_empty() {
            entry.insert("searchRevInclude".into(), json!(r.search_rev_include));
        }
    }
    entry.insert("searchParam".into(), Value::Array(search_params));
    if !operations.is_empty() {
        entry.insert("operation".into(), Value::Array(operations));
    }
    Value::Object(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_core_server_capability_is_loaded() {
        let cap = capability();
        assert_eq!(cap.fhir_version, "4.0.1");
        assert!(cap.url.ends_with("us-core-server"));
        let obs = cap.resource("Observation").expect("Observation");
        assert!(obs.supported_profiles.len() > 10);
        assert!(obs
            .search_combinations
            .iter()
            .any(|c| c.required == ["patient", "category"]));
        assert!(is_supported_resource_type("Patient"));
        assert!(is_supported_resource_type("Group"));
        assert!(is_supported_resource_type("AuditEvent"));
        assert!(!is_supported_resource_type("Substance"));
        assert!(cap
            .resource("DocumentReference")
            .is_some_and(|d| d.operations.iter().any(|o| o.name == "docref")));
    }

    #[test]
    fn every_us_core_search_parameter_is_in_the_search_table() {
        for r in &capability().resources {
            for p in &r.search_params {
                let def = crate::fhir::search_parameter(&r.resource_type, &p.name);
                assert!(def.is_some(), "{}.{}", r.resource_type, p.name);
                if let (Some(def), Some(url)) = (def, &p.definition) {
                    assert!(
                        def.url == *url || def.overrides.as_deref() == Some(url.as_str()),
                        "{}.{}: {} vs {url}",
                        r.resource_type,
                        p.name,
                        def.url
                    );
                }
            }
        }
    }

    #[test]
    fn capability_statement_is_built_from_the_tables_and_is_valid_fhir() {
        let server = ServerDescription {
            base_url: "https://ehr.example.org/fhir/r4".into(),
            software_name: "Sphere EHR".into(),
            software_version: "0.1.0".into(),
            date: "2026-01-01".into(),
            type_interactions: ["read", "vread", "search-type", "create", "update", "delete"]
                .map(String::from)
                .to_vec(),
            system_interactions: vec!["transaction".into(), "batch".into()],
            system_operations: vec![(
                "export".into(),
                "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export".into(),
            )],
            type_operations: vec![],
            security: None,
        };
        let cs = capability_statement(&server);
        let issues = crate::fhir::validate::validate(&cs);
        assert!(!crate::fhir::has_errors(&issues), "{issues:#?}");
        let resources = cs["rest"][0]["resource"].as_array().expect("resources");
        assert_eq!(resources.len(), capability().supported_types.len());
        let obs = resources
            .iter()
            .find(|r| r["type"] == "Observation")
            .expect("Observation");
        assert!(obs["searchParam"]
            .as_array()
            .expect("params")
            .iter()
            .any(|p| p["name"] == "code" && p["type"] == "token"));
        let group = resources
            .iter()
            .find(|r| r["type"] == "Group")
            .expect("Group");
        assert!(group.get("supportedProfile").is_none());
        assert_eq!(
            cs["instantiates"][0],
            "http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"
        );
    }
}
