//! FHIRPath invariants from the definitions: the base types' own error-severity constraints
//! (`obs-6`, `per-1`, `que-1`...) keyed by element path, and the constraints US Core profiles add
//! (`us-core-2`, `vs-2`...). Generated into `generated/invariants.json`; each expression is
//! compiled once by [`super::fhirpath`], and those it cannot compile are left out.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::fhirpath::FhirPath;

const INVARIANTS_JSON: &str = include_str!("generated/invariants.json");

/// One compiled invariant.
#[derive(Debug)]
pub struct Invariant {
    /// Element path it is evaluated on (`Observation`, `Observation.effective[x]`, `Period`).
    pub path: String,
    pub key: String,
    /// `error` or `warning`.
    pub severity: String,
    pub human: String,
    pub expression: String,
    pub compiled: FhirPath,
}

/// `[key, human, expression]`
type RawTypeInvariant = (String, String, String);
/// `[path, key, severity, human, expression]`
type RawProfileInvariant = (String, String, String, String, String);

#[derive(Deserialize)]
struct RawInvariants {
    types: HashMap<String, Vec<RawTypeInvariant>>,
    profiles: HashMap<String, Vec<RawProfileInvariant>>,
}

struct Table {
    by_path: HashMap<String, Vec<Invariant>>,
    by_profile: HashMap<String, Vec<Invariant>>,
    not_compiled: Vec<String>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let raw: RawInvariants = serde_json::from_str(INVARIANTS_JSON)
            .expect("embedded generated/invariants.json parses; covered by tests");
        let mut not_compiled = Vec::new();
        let mut compile =
            |path: String, key: String, severity: String, human: String, expression: String| {
                match FhirPath::parse(&expression) {
                    Ok(compiled) => Some(Invariant {
                        path,
                        key,
                        severity,
                        human,
                        expression,
                        compiled,
                    }),
                    Err(_) => {
                        not_compiled.push(key);
                        None
                    }
                }
            };
        let by_path = raw
            .types
            .into_iter()
            .map(|(path, list)| {
                let compiled = list
                    .into_iter()
                    .filter_map(|(key, human, expr)| {
                        compile(path.clone(), key, "error".to_owned(), human, expr)
                    })
                    .collect();
                (path, compiled)
            })
            .collect();
        let by_profile = raw
            .profiles
            .into_iter()
            .map(|(url, list)| {
                let compiled = list
                    .into_iter()
                    .filter_map(|(path, key, severity, human, expr)| {
                        compile(path, key, severity, human, expr)
                    })
                    .collect();
                (url, compiled)
            })
            .collect();
        Table {
            by_path,
            by_profile,
            not_compiled,
        }
    })
}

/// The base invariants evaluated on values of `path` (a resource, backbone element or datatype).
pub fn for_path(path: &str) -> &'static [Invariant] {
    table().by_path.get(path).map(Vec::as_slice).unwrap_or(&[])
}

/// The invariants a US Core profile adds (canonical URL without version).
pub fn for_profile(url: &str) -> &'static [Invariant] {
    table()
        .by_profile
        .get(url.split('|').next().unwrap_or(url))
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Keys of invariants whose expression uses FHIRPath this evaluator does not parse.
pub fn not_compiled() -> &'static [String] {
    &table().not_compiled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearly_all_invariants_compile() {
        assert!(!for_path("Observation").is_empty());
        assert!(for_path("Period").iter().any(|i| i.key == "per-1"));
        assert!(for_profile(
            "http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"
        )
        .iter()
        .any(|i| i.key == "us-core-2"));
        assert!(not_compiled().len() < 10, "{:?}", not_compiled());
    }
}
