//! The US Core 6.1.0 server CapabilityStatement, reduced to the facts the server instantiates:
//! per-resource interactions, profiles, search parameters and combinations, includes, operations.
//!
//! Generated into `generated/capability.json`; the `/metadata` handler builds the server's
//! CapabilityStatement from this and from [`super::search_parameters`], so they cannot drift.

use std::sync::OnceLock;

use serde::Deserialize;

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
}
