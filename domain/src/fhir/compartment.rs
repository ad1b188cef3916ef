//! The FHIR R4 Patient compartment: for each resource type, the search parameters whose
//! reference makes a resource part of a patient's compartment (`Observation`: `subject`,
//! `performer`). Generated into `generated/patient-compartment.json` from the R4
//! CompartmentDefinition; compartment search, `$everything`, Bulk Data export and
//! patient-scoped access all read it.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

const PATIENT_COMPARTMENT_JSON: &str = include_str!("generated/patient-compartment.json");

#[derive(Deserialize)]
struct RawCompartment {
    resources: HashMap<String, Vec<String>>,
}

fn table() -> &'static HashMap<String, Vec<String>> {
    static TABLE: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        serde_json::from_str::<RawCompartment>(PATIENT_COMPARTMENT_JSON)
            .expect("embedded generated/patient-compartment.json parses; covered by tests")
            .resources
    })
}

/// The search parameters linking `resource_type` to a patient; empty when the type is not in
/// the Patient compartment. For `Patient` itself this is `link` (the patient's own resource is
/// in its compartment by id).
pub fn patient_compartment_params(resource_type: &str) -> &'static [String] {
    table().get(resource_type).map(Vec::as_slice).unwrap_or(&[])
}

/// Is `resource_type` in the Patient compartment at all?
pub fn in_patient_compartment(resource_type: &str) -> bool {
    resource_type == "Patient" || table().contains_key(resource_type)
}

/// All resource types in the Patient compartment, sorted.
pub fn patient_compartment_types() -> Vec<&'static str> {
    let mut v: Vec<&str> = table().keys().map(String::as_str).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search_parameters::search_parameter;

    #[test]
    fn observation_is_linked_by_subject_and_performer() {
        let params = patient_compartment_params("Observation");
        assert!(params.iter().any(|p| p == "subject"));
        assert!(params.iter().any(|p| p == "performer"));
        assert!(in_patient_compartment("Patient"));
        assert!(in_patient_compartment("Encounter"));
        assert!(!in_patient_compartment("Organization"));
        assert!(patient_compartment_params("Organization").is_empty());
        assert!(patient_compartment_types().contains(&"AllergyIntolerance"));
    }

    #[test]
    fn every_compartment_param_of_a_supported_type_is_a_search_parameter() {
        for t in patient_compartment_types() {
            if crate::fhir::search_parameters(t).is_empty() {
                continue; // not a supported type
            }
            for p in patient_compartment_params(t) {
                assert!(search_parameter(t, p).is_some(), "{t}.{p}");
            }
        }
    }
}
