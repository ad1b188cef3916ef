//! US Core 6.1.0 profiles as constraint trees: what each profile requires beyond the base
//! resource (cardinality, fixed and pattern values, required bindings, slices), plus its
//! Must Support element ids.
//!
//! Generated into `generated/us-core-profiles.json` from the profiles' snapshots. Each tree keeps
//! only the elements that constrain something, so checking a resource against it is cheap.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;

use super::definitions::Max;

const PROFILES_JSON: &str = include_str!("generated/us-core-profiles.json");

/// A node of a profile's constraint tree: one element (by JSON name, `value[x]` for any choice).
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileNode {
    pub name: String,
    pub min: u32,
    pub max: Max,
    /// The value must equal this exactly.
    #[serde(default)]
    pub fixed: Option<Value>,
    /// The value must contain this (FHIR pattern semantics).
    #[serde(default)]
    pub pattern: Option<Value>,
    /// For a choice element the profile narrows: the allowed type codes (`dateTime`, `Period`).
    #[serde(default)]
    pub types: Vec<String>,
    /// A required binding that differs from the base resource's.
    #[serde(default)]
    pub binding: Option<String>,
    #[serde(default)]
    pub children: Vec<ProfileNode>,
    #[serde(default)]
    pub slices: Vec<ProfileNode>,
    /// For a slice: (relative path, value) pairs an instance must match to belong to it.
    #[serde(default)]
    pub tests: Vec<(String, Value)>,
    /// For a slice discriminated by value set: members are the values coded from this value set.
    #[serde(default)]
    pub member_binding: Option<String>,
}

/// A US Core profile on a resource type.
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    pub url: String,
    pub name: String,
    pub title: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The profile it derives from (a base resource or another US Core profile).
    pub base: String,
    /// Element paths the profile makes mandatory that the base resource does not.
    pub required: Vec<String>,
    /// Element ids flagged Must Support (`Observation.category:us-core`...).
    pub must_support: Vec<String>,
    /// The constraint tree, rooted at the resource type.
    pub constraints: ProfileNode,
}

/// A US Core extension definition.
#[derive(Debug, Clone, Deserialize)]
pub struct ExtensionDef {
    pub url: String,
    pub name: String,
    /// Complex extensions carry nested `extension` instead of `value[x]`.
    pub complex: bool,
    pub value_types: Vec<String>,
    /// Its constraint tree, rooted at `Extension`.
    pub constraints: ProfileNode,
}

#[derive(Deserialize)]
struct RawProfiles {
    version: String,
    profiles: Vec<Profile>,
    extensions: Vec<ExtensionDef>,
}

struct ProfileTable {
    version: String,
    profiles: Vec<Profile>,
    by_url: HashMap<String, usize>,
    extensions: Vec<ExtensionDef>,
}

fn table() -> &'static ProfileTable {
    static TABLE: OnceLock<ProfileTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let raw: RawProfiles = serde_json::from_str(PROFILES_JSON)
            .expect("embedded generated/us-core-profiles.json parses; covered by tests");
        let by_url = raw
            .profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.url.clone(), i))
            .collect();
        ProfileTable {
            version: raw.version,
            profiles: raw.profiles,
            by_url,
            extensions: raw.extensions,
        }
    })
}

/// The US Core version the tables come from (`6.1.0`).
pub fn us_core_version() -> &'static str {
    &table().version
}

/// All US Core profiles on a resource type (several for Observation).
pub fn profiles_for(resource_type: &str) -> Vec<&'static Profile> {
    table()
        .profiles
        .iter()
        .filter(|p| p.resource_type == resource_type)
        .collect()
}

/// A profile by canonical URL; a `|version` suffix is ignored.
pub fn profile(url: &str) -> Option<&'static Profile> {
    let t = table();
    let url = url.split('|').next().unwrap_or(url);
    t.by_url.get(url).map(|&i| &t.profiles[i])
}

/// All US Core profiles.
pub fn all_profiles() -> &'static [Profile] {
    &table().profiles
}

/// The US Core extension definitions (race, ethnicity, birthsex...).
pub fn us_core_extensions() -> &'static [ExtensionDef] {
    &table().extensions
}

/// A US Core extension definition by its url.
pub fn us_core_extension(url: &str) -> Option<&'static ExtensionDef> {
    table().extensions.iter().find(|e| e.url == url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_core_patient_requires_identifier_name_gender() {
        let p = profile("http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient|6.1.0")
            .expect("patient profile");
        assert_eq!(p.resource_type, "Patient");
        for path in ["Patient.identifier", "Patient.name", "Patient.gender"] {
            assert!(p.required.iter().any(|r| r == path), "{path}");
        }
        assert!(p.must_support.iter().any(|m| m == "Patient.birthDate"));
        assert_eq!(us_core_version(), "6.1.0");
    }

    #[test]
    fn observation_has_many_profiles_and_blood_pressure_slices() {
        assert!(profiles_for("Observation").len() > 15);
        let bp = profile("http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure")
            .expect("bp");
        let component = bp
            .constraints
            .children
            .iter()
            .find(|c| c.name == "component")
            .expect("component");
        assert_eq!(component.min, 2);
        assert!(component.slices.iter().any(|s| s.name == "systolic"));
        assert!(us_core_extensions()
            .iter()
            .any(|e| e.url.ends_with("us-core-race")));
        assert_eq!(all_profiles().len(), 49);
    }
}
