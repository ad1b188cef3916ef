//! Deterministic synthetic USCDI v3 patients (US Core 6.1.0) for demos, tests and benchmarks.
//!
//! [`generate`] streams a population resource by resource: first the shared resources (the
//! service's own Organization, the payers and the lab, Practitioners, PractitionerRoles, Locations,
//! an Endpoint), then one coherent record per patient (demographics, encounters with their
//! diagnoses, vital signs, labs, medications, notes, ... and a Provenance for every clinical
//! resource), then the Groups (all patients; a diabetes cohort) for Bulk Data.
//!
//! The same [`GenerateConfig`] always yields the same bytes: every patient draws from its own PRNG
//! stream derived from the seed and its index, so records can be generated in any order, in
//! parallel, or one at a time ([`patient_record`]) without changing a byte. Ids are derived from the
//! seed and the patient index, so re-importing a population is idempotent and two seeds can live
//! side by side.
//!
//! What this module is not: a model of epidemiology. The tables in `codes` are small and real; the
//! archetypes in `record` exist so that every US Core profile, every Must Support element and every
//! (g)(10) search has data at the default size of 50 patients.
//!
//! No IO here: the file writers live in the application crate (`sphere::generate`).

/// `json!`-like literals that *move* their values into place. serde_json's `json!` passes every
/// interpolated expression through `to_value(&expr)`, which deep-copies a `Value` by serializing
/// it again; the generator interpolates small `Value`s everywhere (codings, references), and that
/// copying cost more than building them.
macro_rules! js {
    ({ $($body:tt)* }) => {{
        #[allow(unused_mut)]
        let mut map = serde_json::Map::new();
        js_object!(map; $($body)*);
        serde_json::Value::Object(map)
    }};
    ([ $($body:tt)* ]) => {{
        // Pushing element by element is what lets the macro recurse into nested literals.
        #[allow(unused_mut, clippy::vec_init_then_push)]
        let items = {
            let mut items: Vec<serde_json::Value> = Vec::new();
            js_array!(items; $($body)*);
            items
        };
        serde_json::Value::Array(items)
    }};
    ($value:expr) => {
        serde_json::Value::from($value)
    };
}

macro_rules! js_object {
    ($map:ident;) => {};
    ($map:ident; $key:literal : { $($value:tt)* } $(, $($rest:tt)*)?) => {
        $map.insert(String::from($key), js!({ $($value)* }));
        $(js_object!($map; $($rest)*);)?
    };
    ($map:ident; $key:literal : [ $($value:tt)* ] $(, $($rest:tt)*)?) => {
        $map.insert(String::from($key), js!([ $($value)* ]));
        $(js_object!($map; $($rest)*);)?
    };
    ($map:ident; $key:literal : $value:expr $(, $($rest:tt)*)?) => {
        $map.insert(String::from($key), js!($value));
        $(js_object!($map; $($rest)*);)?
    };
}

macro_rules! js_array {
    ($items:ident;) => {};
    ($items:ident; { $($value:tt)* } $(, $($rest:tt)*)?) => {
        $items.push(js!({ $($value)* }));
        $(js_array!($items; $($rest)*);)?
    };
    ($items:ident; [ $($value:tt)* ] $(, $($rest:tt)*)?) => {
        $items.push(js!([ $($value)* ]));
        $(js_array!($items; $($rest)*);)?
    };
    ($items:ident; $value:expr $(, $($rest:tt)*)?) => {
        $items.push(js!($value));
        $(js_array!($items; $($rest)*);)?
    };
}

mod codes;
pub(crate) mod datatypes;
mod record;
mod rng;
mod shared;
mod time;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use time::CalendarDate;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateConfig {
    /// Number of patients.
    pub patients: u32,
    /// PRNG seed: the same seed gives the same population, byte for byte.
    pub seed: u64,
    /// The "today" of the population: timelines end here. Fixed (not the wall clock) so that the
    /// output does not depend on when it is generated.
    pub as_of: CalendarDate,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self {
            patients: 50,
            seed: 1,
            as_of: CalendarDate::new(2026, 1, 1),
        }
    }
}

/// The id of the service's own Organization. The same for every seed: it is the one organization
/// that stands for this server (the custodian, the transmitter in every Provenance).
pub const SERVICE_ORGANIZATION_ID: &str = "sphere-ehr";

/// Every profile the generator claims in `meta.profile` (US Core 6.1.0 StructureDefinition ids).
pub const PROFILES: &[&str] = &[
    "us-core-allergyintolerance",
    "us-core-careplan",
    "us-core-careteam",
    "us-core-condition-encounter-diagnosis",
    "us-core-condition-problems-health-concerns",
    "us-core-coverage",
    "us-core-implantable-device",
    "us-core-diagnosticreport-note",
    "us-core-diagnosticreport-lab",
    "us-core-documentreference",
    "us-core-encounter",
    "us-core-goal",
    "us-core-immunization",
    "us-core-location",
    "us-core-medication",
    "us-core-medicationdispense",
    "us-core-medicationrequest",
    "us-core-observation-lab",
    "us-core-observation-pregnancystatus",
    "us-core-observation-pregnancyintent",
    "us-core-observation-occupation",
    "us-core-respiratory-rate",
    "us-core-simple-observation",
    "us-core-heart-rate",
    "us-core-body-temperature",
    "pediatric-weight-for-height",
    "us-core-pulse-oximetry",
    "us-core-smokingstatus",
    "us-core-observation-sexual-orientation",
    "us-core-head-circumference",
    "us-core-body-height",
    "us-core-bmi",
    "us-core-observation-screening-assessment",
    "us-core-blood-pressure",
    "us-core-observation-clinical-result",
    "pediatric-bmi-for-age",
    "head-occipital-frontal-circumference-percentile",
    "us-core-body-weight",
    "us-core-vital-signs",
    "us-core-organization",
    "us-core-patient",
    "us-core-practitioner",
    "us-core-practitionerrole",
    "us-core-procedure",
    "us-core-provenance",
    "us-core-questionnaireresponse",
    "us-core-relatedperson",
    "us-core-servicerequest",
    "us-core-specimen",
];

/// Streams the whole population into `sink`: shared resources, every patient's record, Groups.
pub fn generate(config: &GenerateConfig, sink: &mut impl FnMut(Value)) {
    shared_resources(config, sink);
    for index in 0..config.patients {
        patient_record(config, index, sink);
    }
    groups(config, sink);
}

/// The resources every patient record refers to: Organizations, Practitioners,
/// PractitionerRoles, Locations and an Endpoint. Emit (import) these first.
pub fn shared_resources(config: &GenerateConfig, sink: &mut impl FnMut(Value)) {
    shared::emit(config, sink);
}

/// One patient's record: the Patient and every resource in its compartment, each clinical resource
/// followed by its Provenance. Independent of every other patient's record.
pub fn patient_record(config: &GenerateConfig, index: u32, sink: &mut impl FnMut(Value)) {
    record::emit(config, index, sink);
}

/// The Groups for Bulk Data: every patient, and the type 2 diabetes cohort.
pub fn groups(config: &GenerateConfig, sink: &mut impl FnMut(Value)) {
    let all: Vec<Value> = (0..config.patients)
        .map(|i| js!({"entity": datatypes::reference("Patient", &patient_id(config, i))}))
        .collect();
    let cohort: Vec<Value> = (0..config.patients)
        .filter(|i| record::in_diabetes_cohort(*i))
        .map(|i| js!({"entity": datatypes::reference("Patient", &patient_id(config, i))}))
        .collect();
    let managing = datatypes::reference("Organization", SERVICE_ORGANIZATION_ID);
    sink(js!({
        "resourceType": "Group",
        "id": all_patients_group_id(config),
        "active": true,
        "type": "person",
        "actual": true,
        "name": "All synthetic patients",
        "managingEntity": managing.clone(),
        "quantity": all.len(),
        "member": all,
    }));
    sink(js!({
        "resourceType": "Group",
        "id": cohort_group_id(config),
        "active": true,
        "type": "person",
        "actual": true,
        "code": datatypes::concept(&codes::DIABETES_T2.snomed),
        "name": "Type 2 diabetes cohort",
        "managingEntity": managing,
        "quantity": cohort.len(),
        "characteristic": [{
            "code": datatypes::simple_concept(codes::SNOMED, "64572001", "Disease (disorder)"),
            "valueCodeableConcept": datatypes::concept(&codes::DIABETES_T2.snomed),
            "exclude": false,
        }],
        "member": cohort,
    }));
}

/// The id prefix shared by everything generated from `config.seed`.
pub fn id_prefix(config: &GenerateConfig) -> String {
    format!("s{}", config.seed)
}

/// The id of the patient at `index` (zero-based).
pub fn patient_id(config: &GenerateConfig, index: u32) -> String {
    format!("{}-p{:06}", id_prefix(config), index)
}

pub fn all_patients_group_id(config: &GenerateConfig) -> String {
    format!("{}-group-all", id_prefix(config))
}

pub fn cohort_group_id(config: &GenerateConfig) -> String {
    format!("{}-group-diabetes", id_prefix(config))
}

/// A transaction Bundle that PUTs each resource at `Type/id`: idempotent, so importing the same
/// bundle twice changes nothing the second time, and the order of entries does not matter.
pub fn transaction_bundle(resources: Vec<Value>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|resource| {
            let url = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap_or_default(),
                resource["id"].as_str().unwrap_or_default()
            );
            // No fullUrl: a relative one is not allowed and PUT needs none to resolve references.
            js!({
                "resource": resource,
                "request": {"method": "PUT", "url": url},
            })
        })
        .collect();
    js!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}
