//! Properties of the generated population: deterministic, every US Core profile and Must Support
//! element present, references resolvable, and data behind every (g)(10) search.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use super::*;

fn population(config: &GenerateConfig) -> Vec<Value> {
    let mut out = Vec::new();
    generate(config, &mut |r| out.push(r));
    out
}

fn default_population() -> &'static Vec<Value> {
    static POPULATION: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();
    POPULATION.get_or_init(|| population(&GenerateConfig::default()))
}

fn profile_of(resource: &Value) -> Option<&str> {
    resource["meta"]["profile"][0]
        .as_str()
        .and_then(|p| p.rsplit('/').next())
}

fn of_type<'a>(
    resources: &'a [Value],
    resource_type: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    resources
        .iter()
        .filter(move |r| r["resourceType"] == resource_type)
}

/// Every `system|code` of the CodeableConcepts under `key` (a list or a single concept).
fn codes_at(resource: &Value, key: &str) -> Vec<String> {
    let concepts: Vec<&Value> = match &resource[key] {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    };
    concepts
        .iter()
        .flat_map(|c| c["coding"].as_array().cloned().unwrap_or_default())
        .map(|coding| {
            format!(
                "{}|{}",
                coding["system"].as_str().unwrap_or(""),
                coding["code"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn all_codes(resources: &[Value], resource_type: &str, key: &str) -> BTreeSet<String> {
    of_type(resources, resource_type)
        .flat_map(|r| codes_at(r, key))
        .collect()
}

fn all_strings(resources: &[Value], resource_type: &str, key: &str) -> BTreeSet<String> {
    of_type(resources, resource_type)
        .filter_map(|r| r[key].as_str().map(str::to_owned))
        .collect()
}

/// Values reached by a dotted path; arrays are flattened and `x[x]` matches any `x...` key.
fn walk<'a>(value: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    let Some((head, rest)) = path.split_first() else {
        match value {
            Value::Array(items) => out.extend(items.iter()),
            other => out.push(other),
        }
        return;
    };
    match value {
        Value::Array(items) => items.iter().for_each(|item| walk(item, path, out)),
        Value::Object(map) => {
            if let Some(prefix) = head.strip_suffix("[x]") {
                for (key, child) in map {
                    if key.starts_with(prefix)
                        && key[prefix.len()..].starts_with(|c: char| c.is_ascii_uppercase())
                    {
                        walk(child, rest, out);
                    }
                }
            } else if let Some(child) = map.get(*head) {
                walk(child, rest, out);
            }
        }
        _ => {}
    }
}

fn has_extension(value: &Value, url: &str) -> bool {
    match value {
        Value::Object(map) => {
            map.get("url").and_then(Value::as_str) == Some(url)
                || map.values().any(|v| has_extension(v, url))
        }
        Value::Array(items) => items.iter().any(|v| has_extension(v, url)),
        _ => false,
    }
}

fn references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("reference") {
                out.push(reference.clone());
            }
            map.values().for_each(|v| references(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out)),
        _ => {}
    }
}

#[test]
fn same_seed_gives_identical_bytes() {
    let config = GenerateConfig {
        patients: 12,
        ..GenerateConfig::default()
    };
    let a = serde_json::to_string(&population(&config)).expect("serializes");
    let b = serde_json::to_string(&population(&config)).expect("serializes");
    assert_eq!(a, b);
}

#[test]
fn different_seeds_give_different_populations_with_disjoint_patient_ids() {
    let a = population(&GenerateConfig {
        patients: 8,
        seed: 1,
        ..GenerateConfig::default()
    });
    let b = population(&GenerateConfig {
        patients: 8,
        seed: 2,
        ..GenerateConfig::default()
    });
    let ids = |p: &[Value]| {
        of_type(p, "Patient")
            .map(|r| r["id"].as_str().unwrap_or("").to_owned())
            .collect::<HashSet<_>>()
    };
    assert!(ids(&a).is_disjoint(&ids(&b)));
    assert_ne!(
        of_type(&a, "Patient").next().map(|p| &p["name"]),
        of_type(&b, "Patient").next().map(|p| &p["name"])
    );
}

#[test]
fn a_patient_record_does_not_depend_on_the_population_size() {
    let small = GenerateConfig {
        patients: 3,
        ..GenerateConfig::default()
    };
    let large = GenerateConfig {
        patients: 30,
        ..GenerateConfig::default()
    };
    let mut a = Vec::new();
    patient_record(&small, 2, &mut |r| a.push(r));
    let mut b = Vec::new();
    patient_record(&large, 2, &mut |r| b.push(r));
    assert_eq!(a, b);
}

#[test]
fn ids_are_unique_and_valid_fhir_ids() {
    let resources = default_population();
    let mut seen = HashSet::new();
    for r in resources.iter() {
        let key = format!(
            "{}/{}",
            r["resourceType"].as_str().expect("type"),
            r["id"].as_str().expect("id")
        );
        let id = r["id"].as_str().expect("id");
        assert!(
            id.len() <= 64
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'),
            "bad id {id}"
        );
        assert!(seen.insert(key.clone()), "duplicate {key}");
    }
}

#[test]
fn every_listed_profile_appears_at_the_default_size() {
    let claimed: BTreeSet<&str> = default_population().iter().filter_map(profile_of).collect();
    let missing: Vec<&&str> = PROFILES.iter().filter(|p| !claimed.contains(**p)).collect();
    assert!(missing.is_empty(), "profiles without data: {missing:?}");
    let unknown: Vec<&&str> = claimed.iter().filter(|p| !PROFILES.contains(p)).collect();
    assert!(
        unknown.is_empty(),
        "profiles claimed but not listed: {unknown:?}"
    );
}

#[test]
fn every_reference_resolves_within_the_generated_set() {
    let resources = default_population();
    let known: HashSet<String> = resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect();
    for r in resources.iter() {
        let mut refs = Vec::new();
        references(r, &mut refs);
        for reference in refs {
            assert!(
                known.contains(&reference),
                "{}/{} points at missing {reference}",
                r["resourceType"],
                r["id"]
            );
        }
    }
    // Attachment URLs point at Binary resources that are generated too.
    for doc in of_type(resources, "DocumentReference") {
        for content in doc["content"].as_array().expect("content") {
            if let Some(url) = content["attachment"]["url"].as_str() {
                assert!(known.contains(url), "attachment url {url} unresolved");
            }
        }
    }
}

#[test]
fn every_clinical_resource_has_a_provenance() {
    let resources = default_population();
    let targets: HashSet<String> = of_type(resources, "Provenance")
        .flat_map(|p| p["target"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["reference"].as_str().map(str::to_owned))
        .collect();
    let not_clinical = [
        "Provenance",
        "Medication",
        "Binary",
        "Group",
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Location",
        "Endpoint",
    ];
    for r in resources
        .iter()
        .filter(|r| !not_clinical.contains(&r["resourceType"].as_str().unwrap_or("")))
    {
        let key = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap_or(""),
            r["id"].as_str().unwrap_or("")
        );
        assert!(targets.contains(&key), "no Provenance for {key}");
    }
}

#[test]
fn every_must_support_element_appears_somewhere() {
    let resources = default_population();
    let mut by_profile: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for r in resources.iter() {
        if let Some(p) = profile_of(r) {
            by_profile.entry(p).or_default().push(r);
        }
    }
    let mut missing = Vec::new();
    for (profile, path) in MUST_SUPPORT {
        let instances = by_profile.get(profile).cloned().unwrap_or_default();
        let found = if let Some(url) = path.strip_prefix("extension@") {
            instances.iter().any(|r| has_extension(r, url))
        } else {
            let segments: Vec<&str> = path.split('.').collect();
            instances.iter().any(|r| {
                let mut out = Vec::new();
                walk(r, &segments, &mut out);
                !out.is_empty()
            })
        };
        if !found {
            missing.push(format!("{profile}: {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "Must Support elements without data:\n{}",
        missing.join("\n")
    );
    // Fixed-value Must Supports: an old name and an old address with an end date.
    let patients: Vec<&Value> = of_type(resources, "Patient").collect();
    assert!(patients
        .iter()
        .any(|p| p["name"].as_array().is_some_and(|n| n
            .iter()
            .any(|n| n["use"] == "old" && n["period"]["end"].is_string()))));
    assert!(patients
        .iter()
        .any(|p| p["address"].as_array().is_some_and(|a| a
            .iter()
            .any(|a| a["use"] == "old" && a["period"]["end"].is_string()))));
    assert!(patients.iter().any(|p| has_extension(
        p,
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-genderIdentity"
    )));
    assert!(patients.iter().any(|p| has_extension(
        p,
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
    )));
}

#[test]
fn the_g10_single_patient_searches_have_data() {
    let r = default_population();
    let cond = all_codes(r, "Condition", "category");
    for c in [
        "http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis",
        "http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item",
        "http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern",
        "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh",
    ] {
        assert!(cond.contains(c), "no Condition with category {c}");
    }
    assert!(of_type(r, "Condition").any(|c| c["abatementDateTime"].is_string()));
    let obs = all_codes(r, "Observation", "category");
    for c in [
        "laboratory",
        "vital-signs",
        "social-history",
        "survey",
        "imaging",
        "procedure",
    ] {
        assert!(
            obs.contains(&format!(
                "http://terminology.hl7.org/CodeSystem/observation-category|{c}"
            )),
            "no Observation category {c}"
        );
    }
    for c in ["sdoh", "disability-status", "cognitive-status"] {
        assert!(
            obs.contains(&format!(
                "http://hl7.org/fhir/us/core/CodeSystem/us-core-category|{c}"
            )),
            "no Observation category {c}"
        );
    }
    assert!(obs.contains(
        "http://hl7.org/fhir/us/core/CodeSystem/us-core-observation-category|clinical-test"
    ));
    let dr = all_codes(r, "DiagnosticReport", "category");
    for c in [
        "http://terminology.hl7.org/CodeSystem/v2-0074|LAB",
        "http://loinc.org|LP29684-5",
        "http://loinc.org|LP29708-2",
        "http://loinc.org|LP7839-6",
    ] {
        assert!(dr.contains(c), "no DiagnosticReport category {c}");
    }
    let doc_types = all_codes(r, "DocumentReference", "type");
    for c in ["11488-4", "18842-5", "34117-2", "28570-0", "11506-3"] {
        assert!(
            doc_types.contains(&format!("http://loinc.org|{c}")),
            "no DocumentReference type {c}"
        );
    }
    let intents = all_strings(r, "MedicationRequest", "intent");
    assert!(intents.contains("order") && intents.contains("plan"));
    let statuses = all_strings(r, "MedicationRequest", "status");
    assert!(
        statuses.contains("active")
            && statuses.contains("completed")
            && statuses.contains("stopped")
    );
    assert!(of_type(r, "MedicationRequest").any(|m| m["medicationReference"].is_object()));
    assert!(of_type(r, "MedicationRequest").any(|m| m["medicationCodeableConcept"].is_object()));
    assert!(of_type(r, "MedicationDispense").any(|m| m["medicationReference"].is_object()));
    assert!(all_strings(r, "MedicationDispense", "status").len() >= 2);
    assert!(all_strings(r, "Encounter", "status").len() >= 2);
    let classes: BTreeSet<String> = of_type(r, "Encounter")
        .filter_map(|e| e["class"]["code"].as_str().map(str::to_owned))
        .collect();
    for c in ["AMB", "EMER", "IMP", "VR"] {
        assert!(classes.contains(c), "no Encounter class {c}");
    }
    assert!(
        of_type(r, "Encounter").any(|e| e["hospitalization"]["dischargeDisposition"].is_object())
    );
    assert!(all_strings(r, "CareTeam", "status").len() >= 2);
    assert!(all_strings(r, "Immunization", "status").len() >= 2);
    assert!(all_strings(r, "Goal", "lifecycleStatus").len() >= 2);
    assert!(all_strings(r, "ServiceRequest", "status").len() >= 2);
    let doc_status = all_strings(r, "DocumentReference", "status");
    assert!(doc_status.contains("current") && doc_status.contains("superseded"));
    assert!(of_type(r, "DocumentReference").any(|d| d["relatesTo"][0]["code"] == "replaces"));
    assert!(of_type(r, "DiagnosticReport").any(|d| d["media"][0]["link"]["reference"].is_string()));
    let sr_status = all_strings(r, "ServiceRequest", "status");
    for status in ["active", "completed", "revoked"] {
        assert!(
            sr_status.contains(status),
            "no ServiceRequest with status {status}"
        );
    }
    let sr = all_codes(r, "ServiceRequest", "category");
    assert!(sr.contains("http://hl7.org/fhir/us/core/CodeSystem/us-core-category|sdoh"));
    assert!(sr.contains("http://snomed.info/sct|108252007"));
    let allergy_status: BTreeSet<String> = of_type(r, "AllergyIntolerance")
        .flat_map(|a| codes_at(a, "clinicalStatus"))
        .collect();
    assert!(allergy_status.len() >= 2);
    for t in [
        "Coverage",
        "Device",
        "Procedure",
        "QuestionnaireResponse",
        "RelatedPerson",
        "CarePlan",
        "Specimen",
        "Location",
        "PractitionerRole",
    ] {
        assert!(of_type(r, t).next().is_some(), "no {t}");
    }
    assert!(of_type(r, "Group").count() == 2);
    // Enough Observations for one patient to page through 20 pages of a small page size.
    let first = patient_id(&GenerateConfig::default(), 1);
    let per_patient = of_type(r, "Observation")
        .filter(|o| o["subject"]["reference"] == format!("Patient/{first}"))
        .count();
    assert!(
        per_patient >= 60,
        "only {per_patient} observations for {first}"
    );
}

#[test]
fn groups_list_every_patient_and_the_diabetes_cohort() {
    let config = GenerateConfig {
        patients: 16,
        ..GenerateConfig::default()
    };
    let mut out = Vec::new();
    groups(&config, &mut |r| out.push(r));
    assert_eq!(out[0]["member"].as_array().map(Vec::len), Some(16));
    let cohort = out[1]["member"].as_array().expect("members");
    assert_eq!(cohort.len(), 4);
    let mut diabetic = Vec::new();
    for member in cohort {
        let id = member["entity"]["reference"]
            .as_str()
            .expect("reference")
            .trim_start_matches("Patient/")
            .to_owned();
        let index: u32 = id
            .rsplit("-p")
            .next()
            .and_then(|n| n.parse().ok())
            .expect("index");
        let mut record = Vec::new();
        patient_record(&config, index, &mut |r| record.push(r));
        diabetic.push(record.iter().any(|r| {
            r["resourceType"] == "Condition"
                && codes_at(r, "code").iter().any(|c| c.ends_with("|44054006"))
        }));
    }
    assert!(diabetic.iter().all(|d| *d));
}

#[test]
fn transaction_bundle_puts_each_resource_at_its_own_url() {
    let mut record = Vec::new();
    patient_record(&GenerateConfig::default(), 0, &mut |r| record.push(r));
    let n = record.len();
    let bundle = transaction_bundle(record);
    assert_eq!(bundle["type"], "transaction");
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), n);
    for e in entries {
        assert_eq!(e["request"]["method"], "PUT");
        assert_eq!(
            e["request"]["url"],
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap_or(""),
                e["resource"]["id"].as_str().unwrap_or("")
            )
        );
    }
}

#[test]
fn every_must_support_reference_points_at_each_of_its_target_types() {
    let resources = default_population();
    let mut missing = Vec::new();
    for (profile, path, targets) in MUST_SUPPORT_REFERENCES {
        let segments: Vec<&str> = path.split('.').collect();
        let mut seen_types = BTreeSet::new();
        for r in resources.iter().filter(|r| profile_of(r) == Some(*profile)) {
            let mut out = Vec::new();
            walk(r, &segments, &mut out);
            for value in out {
                if let Some(t) = value["reference"]
                    .as_str()
                    .and_then(|s| s.split('/').next())
                {
                    seen_types.insert(t.to_owned());
                }
            }
        }
        for target in targets.iter() {
            if !seen_types.contains(*target) {
                missing.push(format!("{profile}.{path} -> {target}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "Must Support references without a target of that type:\n{}",
        missing.join("\n")
    );
}

/// Writes the default population as NDJSON per type into `$SYNTHETIC_DUMP_DIR` (for the external
/// validator in scripts/validate-synthetic). Run with `--ignored`.
#[test]
#[ignore]
fn dump_ndjson_for_external_validation() {
    use std::io::Write;
    let Ok(dir) = std::env::var("SYNTHETIC_DUMP_DIR") else {
        return;
    };
    std::fs::create_dir_all(&dir).expect("create dump dir");
    let mut files: BTreeMap<String, std::fs::File> = BTreeMap::new();
    for r in default_population() {
        let t = r["resourceType"].as_str().expect("type").to_owned();
        let file = files
            .entry(t.clone())
            .or_insert_with(|| std::fs::File::create(format!("{dir}/{t}.ndjson")).expect("create"));
        writeln!(file, "{}", serde_json::to_string(r).expect("serializes")).expect("write");
    }
}

/// Must Support element paths per profile (slice names dropped), from the US Core 6.1.0 test kit metadata.
const MUST_SUPPORT: &[(&str, &str)] = &[
    ("us-core-allergyintolerance", "clinicalStatus"),
    ("us-core-allergyintolerance", "verificationStatus"),
    ("us-core-allergyintolerance", "code"),
    ("us-core-allergyintolerance", "patient"),
    ("us-core-allergyintolerance", "reaction"),
    ("us-core-allergyintolerance", "reaction.manifestation"),
    ("us-core-careplan", "text"),
    ("us-core-careplan", "text.status"),
    ("us-core-careplan", "text.div"),
    ("us-core-careplan", "status"),
    ("us-core-careplan", "intent"),
    ("us-core-careplan", "category"),
    ("us-core-careplan", "subject"),
    ("us-core-careteam", "status"),
    ("us-core-careteam", "subject"),
    ("us-core-careteam", "participant"),
    ("us-core-careteam", "participant.role"),
    ("us-core-careteam", "participant.member"),
    ("us-core-condition-encounter-diagnosis", "category"),
    ("us-core-condition-encounter-diagnosis", "code"),
    ("us-core-condition-encounter-diagnosis", "subject"),
    ("us-core-condition-encounter-diagnosis", "encounter"),
    ("us-core-condition-encounter-diagnosis", "abatementDateTime"),
    ("us-core-condition-encounter-diagnosis", "recordedDate"),
    ("us-core-condition-problems-health-concerns", "clinicalStatus"),
    ("us-core-condition-problems-health-concerns", "verificationStatus"),
    ("us-core-condition-problems-health-concerns", "category"),
    ("us-core-condition-problems-health-concerns", "code"),
    ("us-core-condition-problems-health-concerns", "subject"),
    ("us-core-condition-problems-health-concerns", "onsetDateTime"),
    ("us-core-condition-problems-health-concerns", "abatementDateTime"),
    ("us-core-condition-problems-health-concerns", "recordedDate"),
    ("us-core-condition-problems-health-concerns", "extension@http://hl7.org/fhir/StructureDefinition/condition-assertedDate"),
    ("us-core-coverage", "identifier"),
    ("us-core-coverage", "identifier.type"),
    ("us-core-coverage", "status"),
    ("us-core-coverage", "type"),
    ("us-core-coverage", "subscriberId"),
    ("us-core-coverage", "beneficiary"),
    ("us-core-coverage", "relationship"),
    ("us-core-coverage", "period"),
    ("us-core-coverage", "payor"),
    ("us-core-coverage", "class"),
    ("us-core-coverage", "class.value"),
    ("us-core-coverage", "class.name"),
    ("us-core-implantable-device", "udiCarrier"),
    ("us-core-implantable-device", "udiCarrier.deviceIdentifier"),
    ("us-core-implantable-device", "udiCarrier.carrierHRF"),
    ("us-core-implantable-device", "distinctIdentifier"),
    ("us-core-implantable-device", "manufactureDate"),
    ("us-core-implantable-device", "expirationDate"),
    ("us-core-implantable-device", "lotNumber"),
    ("us-core-implantable-device", "serialNumber"),
    ("us-core-implantable-device", "type"),
    ("us-core-implantable-device", "patient"),
    ("us-core-diagnosticreport-note", "status"),
    ("us-core-diagnosticreport-note", "category"),
    ("us-core-diagnosticreport-note", "code"),
    ("us-core-diagnosticreport-note", "subject"),
    ("us-core-diagnosticreport-note", "encounter"),
    ("us-core-diagnosticreport-note", "effectiveDateTime"),
    ("us-core-diagnosticreport-note", "issued"),
    ("us-core-diagnosticreport-note", "performer"),
    ("us-core-diagnosticreport-note", "result"),
    ("us-core-diagnosticreport-note", "presentedForm"),
    ("us-core-diagnosticreport-lab", "status"),
    ("us-core-diagnosticreport-lab", "category"),
    ("us-core-diagnosticreport-lab", "code"),
    ("us-core-diagnosticreport-lab", "subject"),
    ("us-core-diagnosticreport-lab", "effectiveDateTime"),
    ("us-core-diagnosticreport-lab", "issued"),
    ("us-core-diagnosticreport-lab", "performer"),
    ("us-core-diagnosticreport-lab", "result"),
    ("us-core-documentreference", "identifier"),
    ("us-core-documentreference", "status"),
    ("us-core-documentreference", "type"),
    ("us-core-documentreference", "category"),
    ("us-core-documentreference", "subject"),
    ("us-core-documentreference", "date"),
    ("us-core-documentreference", "author"),
    ("us-core-documentreference", "content"),
    ("us-core-documentreference", "content.attachment"),
    ("us-core-documentreference", "content.attachment.contentType"),
    ("us-core-documentreference", "content.attachment.data"),
    ("us-core-documentreference", "content.attachment.url"),
    ("us-core-documentreference", "content.format"),
    ("us-core-documentreference", "context"),
    ("us-core-documentreference", "context.encounter"),
    ("us-core-documentreference", "context.period"),
    ("us-core-encounter", "identifier"),
    ("us-core-encounter", "identifier.system"),
    ("us-core-encounter", "identifier.value"),
    ("us-core-encounter", "status"),
    ("us-core-encounter", "class"),
    ("us-core-encounter", "type"),
    ("us-core-encounter", "subject"),
    ("us-core-encounter", "participant"),
    ("us-core-encounter", "participant.type"),
    ("us-core-encounter", "participant.period"),
    ("us-core-encounter", "participant.individual"),
    ("us-core-encounter", "period"),
    ("us-core-encounter", "reasonCode"),
    ("us-core-encounter", "reasonReference"),
    ("us-core-encounter", "hospitalization"),
    ("us-core-encounter", "hospitalization.dischargeDisposition"),
    ("us-core-encounter", "location"),
    ("us-core-encounter", "location.location"),
    ("us-core-encounter", "serviceProvider"),
    ("us-core-goal", "lifecycleStatus"),
    ("us-core-goal", "description"),
    ("us-core-goal", "subject"),
    ("us-core-goal", "startDate"),
    ("us-core-goal", "target"),
    ("us-core-goal", "target.dueDate"),
    ("us-core-immunization", "status"),
    ("us-core-immunization", "statusReason"),
    ("us-core-immunization", "vaccineCode"),
    ("us-core-immunization", "patient"),
    ("us-core-immunization", "occurrenceDateTime"),
    ("us-core-immunization", "primarySource"),
    ("us-core-location", "status"),
    ("us-core-location", "name"),
    ("us-core-location", "telecom"),
    ("us-core-location", "address"),
    ("us-core-location", "address.line"),
    ("us-core-location", "address.city"),
    ("us-core-location", "address.state"),
    ("us-core-location", "address.postalCode"),
    ("us-core-location", "managingOrganization"),
    ("us-core-medication", "code"),
    ("us-core-medicationdispense", "status"),
    ("us-core-medicationdispense", "medication[x]"),
    ("us-core-medicationdispense", "subject"),
    ("us-core-medicationdispense", "performer"),
    ("us-core-medicationdispense", "performer.actor"),
    ("us-core-medicationdispense", "authorizingPrescription"),
    ("us-core-medicationdispense", "type"),
    ("us-core-medicationdispense", "quantity"),
    ("us-core-medicationdispense", "whenHandedOver"),
    ("us-core-medicationdispense", "dosageInstruction"),
    ("us-core-medicationdispense", "dosageInstruction.text"),
    ("us-core-medicationdispense", "dosageInstruction.timing"),
    ("us-core-medicationdispense", "dosageInstruction.doseAndRate"),
    ("us-core-medicationdispense", "dosageInstruction.doseAndRate.doseQuantity"),
    ("us-core-medicationrequest", "status"),
    ("us-core-medicationrequest", "intent"),
    ("us-core-medicationrequest", "category"),
    ("us-core-medicationrequest", "reportedBoolean"),
    ("us-core-medicationrequest", "reportedReference"),
    ("us-core-medicationrequest", "medication[x]"),
    ("us-core-medicationrequest", "subject"),
    ("us-core-medicationrequest", "encounter"),
    ("us-core-medicationrequest", "authoredOn"),
    ("us-core-medicationrequest", "requester"),
    ("us-core-medicationrequest", "reasonCode"),
    ("us-core-medicationrequest", "reasonReference"),
    ("us-core-medicationrequest", "dosageInstruction"),
    ("us-core-medicationrequest", "dosageInstruction.text"),
    ("us-core-medicationrequest", "dosageInstruction.timing"),
    ("us-core-medicationrequest", "dosageInstruction.doseAndRate"),
    ("us-core-medicationrequest", "dosageInstruction.doseAndRate.doseQuantity"),
    ("us-core-medicationrequest", "dispenseRequest"),
    ("us-core-medicationrequest", "dispenseRequest.numberOfRepeatsAllowed"),
    ("us-core-medicationrequest", "dispenseRequest.quantity"),
    ("us-core-observation-lab", "status"),
    ("us-core-observation-lab", "category"),
    ("us-core-observation-lab", "code"),
    ("us-core-observation-lab", "subject"),
    ("us-core-observation-lab", "effectiveDateTime"),
    ("us-core-observation-lab", "valueQuantity"),
    ("us-core-observation-lab", "valueCodeableConcept"),
    ("us-core-observation-lab", "valueString"),
    ("us-core-observation-lab", "specimen"),
    ("us-core-observation-pregnancystatus", "status"),
    ("us-core-observation-pregnancystatus", "category"),
    ("us-core-observation-pregnancystatus", "code.coding.code"),
    ("us-core-observation-pregnancystatus", "subject"),
    ("us-core-observation-pregnancyintent", "status"),
    ("us-core-observation-pregnancyintent", "category"),
    ("us-core-observation-pregnancyintent", "code.coding.code"),
    ("us-core-observation-pregnancyintent", "subject"),
    ("us-core-observation-occupation", "status"),
    ("us-core-observation-occupation", "category"),
    ("us-core-observation-occupation", "code.coding.code"),
    ("us-core-observation-occupation", "subject"),
    ("us-core-observation-occupation", "component"),
    ("us-core-observation-occupation", "component.code"),
    ("us-core-observation-occupation", "component.value[x]"),
    ("us-core-respiratory-rate", "status"),
    ("us-core-respiratory-rate", "category"),
    ("us-core-respiratory-rate", "category.coding"),
    ("us-core-respiratory-rate", "category.coding.system"),
    ("us-core-respiratory-rate", "category.coding.code"),
    ("us-core-respiratory-rate", "code.coding.code"),
    ("us-core-respiratory-rate", "subject"),
    ("us-core-respiratory-rate", "effectiveDateTime"),
    ("us-core-respiratory-rate", "valueQuantity"),
    ("us-core-respiratory-rate", "valueQuantity.value"),
    ("us-core-respiratory-rate", "valueQuantity.unit"),
    ("us-core-respiratory-rate", "valueQuantity.system"),
    ("us-core-respiratory-rate", "valueQuantity.code"),
    ("us-core-simple-observation", "status"),
    ("us-core-simple-observation", "category"),
    ("us-core-simple-observation", "code"),
    ("us-core-simple-observation", "subject"),
    ("us-core-simple-observation", "effectiveDateTime"),
    ("us-core-simple-observation", "performer"),
    ("us-core-simple-observation", "valueQuantity"),
    ("us-core-simple-observation", "valueCodeableConcept"),
    ("us-core-simple-observation", "valueString"),
    ("us-core-simple-observation", "valueBoolean"),
    ("us-core-simple-observation", "derivedFrom"),
    ("us-core-heart-rate", "status"),
    ("us-core-heart-rate", "category"),
    ("us-core-heart-rate", "category.coding"),
    ("us-core-heart-rate", "category.coding.system"),
    ("us-core-heart-rate", "category.coding.code"),
    ("us-core-heart-rate", "code.coding.code"),
    ("us-core-heart-rate", "subject"),
    ("us-core-heart-rate", "effectiveDateTime"),
    ("us-core-heart-rate", "valueQuantity"),
    ("us-core-heart-rate", "valueQuantity.value"),
    ("us-core-heart-rate", "valueQuantity.unit"),
    ("us-core-heart-rate", "valueQuantity.system"),
    ("us-core-heart-rate", "valueQuantity.code"),
    ("us-core-body-temperature", "status"),
    ("us-core-body-temperature", "category"),
    ("us-core-body-temperature", "category.coding"),
    ("us-core-body-temperature", "category.coding.system"),
    ("us-core-body-temperature", "category.coding.code"),
    ("us-core-body-temperature", "code.coding.code"),
    ("us-core-body-temperature", "subject"),
    ("us-core-body-temperature", "effectiveDateTime"),
    ("us-core-body-temperature", "valueQuantity"),
    ("us-core-body-temperature", "valueQuantity.value"),
    ("us-core-body-temperature", "valueQuantity.unit"),
    ("us-core-body-temperature", "valueQuantity.system"),
    ("us-core-body-temperature", "valueQuantity.code"),
    ("pediatric-weight-for-height", "status"),
    ("pediatric-weight-for-height", "category"),
    ("pediatric-weight-for-height", "category.coding"),
    ("pediatric-weight-for-height", "category.coding.system"),
    ("pediatric-weight-for-height", "category.coding.code"),
    ("pediatric-weight-for-height", "code.coding.code"),
    ("pediatric-weight-for-height", "subject"),
    ("pediatric-weight-for-height", "effectiveDateTime"),
    ("pediatric-weight-for-height", "valueQuantity"),
    ("pediatric-weight-for-height", "valueQuantity.value"),
    ("pediatric-weight-for-height", "valueQuantity.unit"),
    ("pediatric-weight-for-height", "valueQuantity.system"),
    ("pediatric-weight-for-height", "valueQuantity.code"),
    ("us-core-pulse-oximetry", "status"),
    ("us-core-pulse-oximetry", "category"),
    ("us-core-pulse-oximetry", "category.coding"),
    ("us-core-pulse-oximetry", "category.coding.system"),
    ("us-core-pulse-oximetry", "category.coding.code"),
    ("us-core-pulse-oximetry", "code"),
    ("us-core-pulse-oximetry", "code.coding"),
    ("us-core-pulse-oximetry", "subject"),
    ("us-core-pulse-oximetry", "effectiveDateTime"),
    ("us-core-pulse-oximetry", "valueQuantity"),
    ("us-core-pulse-oximetry", "valueQuantity.value"),
    ("us-core-pulse-oximetry", "valueQuantity.unit"),
    ("us-core-pulse-oximetry", "valueQuantity.system"),
    ("us-core-pulse-oximetry", "valueQuantity.code"),
    ("us-core-pulse-oximetry", "component"),
    ("us-core-pulse-oximetry", "component.code"),
    ("us-core-pulse-oximetry", "component.valueQuantity"),
    ("us-core-pulse-oximetry", "component.valueQuantity.value"),
    ("us-core-pulse-oximetry", "component.valueQuantity.unit"),
    ("us-core-pulse-oximetry", "component.valueQuantity.system"),
    ("us-core-pulse-oximetry", "component.valueQuantity.code"),
    ("us-core-smokingstatus", "status"),
    ("us-core-smokingstatus", "category"),
    ("us-core-smokingstatus", "code"),
    ("us-core-smokingstatus", "subject"),
    ("us-core-smokingstatus", "valueCodeableConcept"),
    ("us-core-smokingstatus", "effective[x]"),
    ("us-core-observation-sexual-orientation", "status"),
    ("us-core-observation-sexual-orientation", "code.coding.code"),
    ("us-core-observation-sexual-orientation", "subject"),
    ("us-core-observation-sexual-orientation", "effectiveDateTime"),
    ("us-core-head-circumference", "status"),
    ("us-core-head-circumference", "category"),
    ("us-core-head-circumference", "category.coding"),
    ("us-core-head-circumference", "category.coding.system"),
    ("us-core-head-circumference", "category.coding.code"),
    ("us-core-head-circumference", "code.coding.code"),
    ("us-core-head-circumference", "subject"),
    ("us-core-head-circumference", "effectiveDateTime"),
    ("us-core-head-circumference", "valueQuantity"),
    ("us-core-head-circumference", "valueQuantity.value"),
    ("us-core-head-circumference", "valueQuantity.unit"),
    ("us-core-head-circumference", "valueQuantity.system"),
    ("us-core-head-circumference", "valueQuantity.code"),
    ("us-core-body-height", "status"),
    ("us-core-body-height", "category"),
    ("us-core-body-height", "category.coding"),
    ("us-core-body-height", "category.coding.system"),
    ("us-core-body-height", "category.coding.code"),
    ("us-core-body-height", "code.coding.code"),
    ("us-core-body-height", "subject"),
    ("us-core-body-height", "effectiveDateTime"),
    ("us-core-body-height", "valueQuantity"),
    ("us-core-body-height", "valueQuantity.value"),
    ("us-core-body-height", "valueQuantity.unit"),
    ("us-core-body-height", "valueQuantity.system"),
    ("us-core-body-height", "valueQuantity.code"),
    ("us-core-bmi", "status"),
    ("us-core-bmi", "category"),
    ("us-core-bmi", "category.coding"),
    ("us-core-bmi", "category.coding.system"),
    ("us-core-bmi", "category.coding.code"),
    ("us-core-bmi", "code.coding.code"),
    ("us-core-bmi", "subject"),
    ("us-core-bmi", "effectiveDateTime"),
    ("us-core-bmi", "valueQuantity"),
    ("us-core-bmi", "valueQuantity.value"),
    ("us-core-bmi", "valueQuantity.unit"),
    ("us-core-bmi", "valueQuantity.system"),
    ("us-core-bmi", "valueQuantity.code"),
    ("us-core-observation-screening-assessment", "status"),
    ("us-core-observation-screening-assessment", "category"),
    ("us-core-observation-screening-assessment", "code"),
    ("us-core-observation-screening-assessment", "subject"),
    ("us-core-observation-screening-assessment", "effectiveDateTime"),
    ("us-core-observation-screening-assessment", "performer"),
    ("us-core-observation-screening-assessment", "valueQuantity"),
    ("us-core-observation-screening-assessment", "valueCodeableConcept"),
    ("us-core-observation-screening-assessment", "valueString"),
    ("us-core-observation-screening-assessment", "hasMember"),
    ("us-core-observation-screening-assessment", "derivedFrom"),
    ("us-core-blood-pressure", "status"),
    ("us-core-blood-pressure", "category"),
    ("us-core-blood-pressure", "category.coding"),
    ("us-core-blood-pressure", "category.coding.system"),
    ("us-core-blood-pressure", "category.coding.code"),
    ("us-core-blood-pressure", "code.coding.code"),
    ("us-core-blood-pressure", "subject"),
    ("us-core-blood-pressure", "effectiveDateTime"),
    ("us-core-blood-pressure", "component"),
    ("us-core-blood-pressure", "component.code"),
    ("us-core-blood-pressure", "component.valueQuantity"),
    ("us-core-blood-pressure", "component.dataAbsentReason"),
    ("us-core-blood-pressure", "component.valueQuantity.value"),
    ("us-core-blood-pressure", "component.valueQuantity.unit"),
    ("us-core-blood-pressure", "component.valueQuantity.system"),
    ("us-core-blood-pressure", "component.valueQuantity.code"),
    ("us-core-observation-clinical-result", "status"),
    ("us-core-observation-clinical-result", "category"),
    ("us-core-observation-clinical-result", "code"),
    ("us-core-observation-clinical-result", "subject"),
    ("us-core-observation-clinical-result", "effectiveDateTime"),
    ("us-core-observation-clinical-result", "valueQuantity"),
    ("us-core-observation-clinical-result", "valueCodeableConcept"),
    ("us-core-observation-clinical-result", "valueString"),
    ("pediatric-bmi-for-age", "status"),
    ("pediatric-bmi-for-age", "category"),
    ("pediatric-bmi-for-age", "category.coding"),
    ("pediatric-bmi-for-age", "category.coding.system"),
    ("pediatric-bmi-for-age", "category.coding.code"),
    ("pediatric-bmi-for-age", "code.coding.code"),
    ("pediatric-bmi-for-age", "subject"),
    ("pediatric-bmi-for-age", "effectiveDateTime"),
    ("pediatric-bmi-for-age", "valueQuantity"),
    ("pediatric-bmi-for-age", "valueQuantity.value"),
    ("pediatric-bmi-for-age", "valueQuantity.unit"),
    ("pediatric-bmi-for-age", "valueQuantity.system"),
    ("pediatric-bmi-for-age", "valueQuantity.code"),
    ("head-occipital-frontal-circumference-percentile", "status"),
    ("head-occipital-frontal-circumference-percentile", "category"),
    ("head-occipital-frontal-circumference-percentile", "category.coding"),
    ("head-occipital-frontal-circumference-percentile", "category.coding.system"),
    ("head-occipital-frontal-circumference-percentile", "category.coding.code"),
    ("head-occipital-frontal-circumference-percentile", "code.coding.code"),
    ("head-occipital-frontal-circumference-percentile", "subject"),
    ("head-occipital-frontal-circumference-percentile", "effectiveDateTime"),
    ("head-occipital-frontal-circumference-percentile", "valueQuantity"),
    ("head-occipital-frontal-circumference-percentile", "valueQuantity.value"),
    ("head-occipital-frontal-circumference-percentile", "valueQuantity.unit"),
    ("head-occipital-frontal-circumference-percentile", "valueQuantity.system"),
    ("head-occipital-frontal-circumference-percentile", "valueQuantity.code"),
    ("us-core-body-weight", "status"),
    ("us-core-body-weight", "category"),
    ("us-core-body-weight", "category.coding"),
    ("us-core-body-weight", "category.coding.system"),
    ("us-core-body-weight", "category.coding.code"),
    ("us-core-body-weight", "code.coding.code"),
    ("us-core-body-weight", "subject"),
    ("us-core-body-weight", "effectiveDateTime"),
    ("us-core-body-weight", "valueQuantity"),
    ("us-core-body-weight", "valueQuantity.value"),
    ("us-core-body-weight", "valueQuantity.unit"),
    ("us-core-body-weight", "valueQuantity.system"),
    ("us-core-body-weight", "valueQuantity.code"),
    ("us-core-organization", "identifier"),
    ("us-core-organization", "identifier.system"),
    ("us-core-organization", "identifier.value"),
    ("us-core-organization", "active"),
    ("us-core-organization", "name"),
    ("us-core-organization", "telecom"),
    ("us-core-organization", "telecom.system"),
    ("us-core-organization", "telecom.value"),
    ("us-core-organization", "address"),
    ("us-core-organization", "address.line"),
    ("us-core-organization", "address.city"),
    ("us-core-organization", "address.state"),
    ("us-core-organization", "address.postalCode"),
    ("us-core-organization", "address.country"),
    ("us-core-patient", "identifier"),
    ("us-core-patient", "identifier.system"),
    ("us-core-patient", "identifier.value"),
    ("us-core-patient", "name"),
    ("us-core-patient", "name.use"),
    ("us-core-patient", "name.family"),
    ("us-core-patient", "name.given"),
    ("us-core-patient", "name.suffix"),
    ("us-core-patient", "name.period.end"),
    ("us-core-patient", "telecom"),
    ("us-core-patient", "telecom.system"),
    ("us-core-patient", "telecom.value"),
    ("us-core-patient", "telecom.use"),
    ("us-core-patient", "gender"),
    ("us-core-patient", "birthDate"),
    ("us-core-patient", "deceasedDateTime"),
    ("us-core-patient", "address"),
    ("us-core-patient", "address.use"),
    ("us-core-patient", "address.line"),
    ("us-core-patient", "address.city"),
    ("us-core-patient", "address.state"),
    ("us-core-patient", "address.postalCode"),
    ("us-core-patient", "address.period.end"),
    ("us-core-patient", "communication"),
    ("us-core-patient", "communication.language"),
    ("us-core-patient", "extension@http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"),
    ("us-core-patient", "extension@http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"),
    ("us-core-patient", "extension@http://hl7.org/fhir/us/core/StructureDefinition/us-core-tribal-affiliation"),
    ("us-core-patient", "extension@http://hl7.org/fhir/us/core/StructureDefinition/us-core-sex"),
    ("us-core-practitioner", "identifier"),
    ("us-core-practitioner", "identifier.system"),
    ("us-core-practitioner", "identifier.value"),
    ("us-core-practitioner", "name"),
    ("us-core-practitioner", "name.family"),
    ("us-core-practitioner", "telecom"),
    ("us-core-practitioner", "telecom.system"),
    ("us-core-practitioner", "telecom.value"),
    ("us-core-practitionerrole", "practitioner"),
    ("us-core-practitionerrole", "organization"),
    ("us-core-practitionerrole", "code"),
    ("us-core-practitionerrole", "specialty"),
    ("us-core-practitionerrole", "location"),
    ("us-core-practitionerrole", "telecom"),
    ("us-core-practitionerrole", "telecom.system"),
    ("us-core-practitionerrole", "telecom.value"),
    ("us-core-practitionerrole", "endpoint"),
    ("us-core-procedure", "basedOn"),
    ("us-core-procedure", "status"),
    ("us-core-procedure", "code"),
    ("us-core-procedure", "subject"),
    ("us-core-procedure", "performedDateTime"),
    ("us-core-provenance", "target"),
    ("us-core-provenance", "target.reference"),
    ("us-core-provenance", "recorded"),
    ("us-core-provenance", "agent"),
    ("us-core-provenance", "agent.type"),
    ("us-core-provenance", "agent.who"),
    ("us-core-provenance", "agent.onBehalfOf"),
    ("us-core-questionnaireresponse", "identifier"),
    ("us-core-questionnaireresponse", "questionnaire"),
    ("us-core-questionnaireresponse", "status"),
    ("us-core-questionnaireresponse", "subject"),
    ("us-core-questionnaireresponse", "authored"),
    ("us-core-questionnaireresponse", "author"),
    ("us-core-questionnaireresponse", "item"),
    ("us-core-questionnaireresponse", "item.linkId"),
    ("us-core-questionnaireresponse", "item.text"),
    ("us-core-questionnaireresponse", "item.answer"),
    ("us-core-questionnaireresponse", "item.answer.valueDecimal"),
    ("us-core-questionnaireresponse", "item.answer.valueString"),
    ("us-core-questionnaireresponse", "item.answer.valueCoding"),
    ("us-core-questionnaireresponse", "item.answer.item"),
    ("us-core-questionnaireresponse", "item.item"),
    ("us-core-questionnaireresponse", "extension@http://hl7.org/fhir/StructureDefinition/display"),
    ("us-core-questionnaireresponse", "extension@http://hl7.org/fhir/us/core/StructureDefinition/us-core-extension-questionnaire-uri"),
    ("us-core-relatedperson", "active"),
    ("us-core-relatedperson", "patient"),
    ("us-core-relatedperson", "relationship"),
    ("us-core-relatedperson", "name"),
    ("us-core-relatedperson", "telecom"),
    ("us-core-relatedperson", "address"),
    ("us-core-servicerequest", "status"),
    ("us-core-servicerequest", "intent"),
    ("us-core-servicerequest", "category"),
    ("us-core-servicerequest", "code"),
    ("us-core-servicerequest", "subject"),
    ("us-core-servicerequest", "occurrencePeriod"),
    ("us-core-servicerequest", "authoredOn"),
    ("us-core-servicerequest", "requester"),
    ("us-core-servicerequest", "reasonCode"),
    ("us-core-servicerequest", "reasonReference"),
    ("us-core-specimen", "type"),
    ("us-core-specimen", "subject"),
];

#[test]
fn every_generated_resource_passes_the_fhir_validator() {
    let mut failures = Vec::new();
    // The default population and one from another seed, so that passing is not luck of one draw.
    let other = population(&GenerateConfig {
        patients: 16,
        seed: 99,
        ..GenerateConfig::default()
    });
    for r in default_population().iter().chain(other.iter()) {
        let issues = crate::fhir::validate::validate(r);
        for issue in issues.iter().filter(|i| i.is_error()) {
            failures.push(format!(
                "{}/{}: {:?}",
                r["resourceType"].as_str().unwrap_or(""),
                r["id"].as_str().unwrap_or(""),
                issue
            ));
        }
    }
    let shown: Vec<&String> = failures.iter().take(40).collect();
    assert!(
        failures.is_empty(),
        "{} validation errors, first ones:\n{shown:#?}",
        failures.len()
    );
}

/// Prints the generation rate (no assertion: speed is measured by `cargo bench --bench synthetic`).
/// Run with `cargo test --release -p sphere-domain synthetic::tests::print_rate -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_rate() {
    let config = GenerateConfig {
        patients: 500,
        ..GenerateConfig::default()
    };
    let start = std::time::Instant::now();
    let mut n = 0u64;
    let mut bytes = 0usize;
    generate(&config, &mut |r| {
        n += 1;
        bytes += serde_json::to_vec(&r).map(|v| v.len()).unwrap_or(0);
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} resources, {} MB in {secs:.2}s: {:.0} resources/s",
        bytes / 1_000_000,
        n as f64 / secs
    );
    let start = std::time::Instant::now();
    generate(&config, &mut |r| {
        std::hint::black_box(r);
    });
    println!(
        "generate only: {:.0} resources/s",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let start = std::time::Instant::now();
    let mut bytes = 0usize;
    for index in 0..config.patients {
        let mut batch = Vec::new();
        patient_record(&config, index, &mut |r| batch.push(r));
        bytes += serde_json::to_vec(&transaction_bundle(batch))
            .map(|v| v.len())
            .unwrap_or(0);
    }
    println!(
        "bundles: {:.0} resources/s ({} MB)",
        n as f64 / start.elapsed().as_secs_f64(),
        bytes / 1_000_000
    );
}

/// Must Support references and their target types, from the US Core 6.1.0 test kit metadata.
const MUST_SUPPORT_REFERENCES: &[(&str, &str, &[&str])] = &[
    ("us-core-allergyintolerance", "patient", &["Patient"]),
    ("us-core-careplan", "subject", &["Patient"]),
    ("us-core-careteam", "subject", &["Patient"]),
    (
        "us-core-careteam",
        "participant.member",
        &["Practitioner", "PractitionerRole", "RelatedPerson"],
    ),
    (
        "us-core-condition-encounter-diagnosis",
        "subject",
        &["Patient"],
    ),
    (
        "us-core-condition-encounter-diagnosis",
        "encounter",
        &["Encounter"],
    ),
    (
        "us-core-condition-problems-health-concerns",
        "subject",
        &["Patient"],
    ),
    ("us-core-coverage", "beneficiary", &["Patient"]),
    ("us-core-coverage", "payor", &["Organization"]),
    ("us-core-implantable-device", "patient", &["Patient"]),
    ("us-core-diagnosticreport-note", "subject", &["Patient"]),
    ("us-core-diagnosticreport-note", "encounter", &["Encounter"]),
    (
        "us-core-diagnosticreport-note",
        "performer",
        &["Organization", "Practitioner"],
    ),
    ("us-core-diagnosticreport-note", "result", &["Observation"]),
    ("us-core-diagnosticreport-lab", "subject", &["Patient"]),
    (
        "us-core-diagnosticreport-lab",
        "performer",
        &["Practitioner"],
    ),
    ("us-core-diagnosticreport-lab", "result", &["Observation"]),
    ("us-core-documentreference", "subject", &["Patient"]),
    ("us-core-documentreference", "author", &["Practitioner"]),
    (
        "us-core-documentreference",
        "context.encounter",
        &["Encounter"],
    ),
    ("us-core-encounter", "subject", &["Patient"]),
    (
        "us-core-encounter",
        "participant.individual",
        &["Practitioner"],
    ),
    ("us-core-encounter", "reasonReference", &["Condition"]),
    ("us-core-encounter", "serviceProvider", &["Organization"]),
    ("us-core-goal", "subject", &["Patient"]),
    ("us-core-immunization", "patient", &["Patient"]),
    (
        "us-core-location",
        "managingOrganization",
        &["Organization"],
    ),
    ("us-core-medicationdispense", "subject", &["Patient"]),
    (
        "us-core-medicationdispense",
        "performer.actor",
        &["Organization"],
    ),
    (
        "us-core-medicationdispense",
        "authorizingPrescription",
        &["MedicationRequest"],
    ),
    (
        "us-core-medicationrequest",
        "reportedReference",
        &["Practitioner"],
    ),
    ("us-core-medicationrequest", "subject", &["Patient"]),
    ("us-core-medicationrequest", "encounter", &["Encounter"]),
    ("us-core-medicationrequest", "requester", &["Practitioner"]),
    ("us-core-observation-lab", "subject", &["Patient"]),
    ("us-core-observation-lab", "specimen", &["Specimen"]),
    (
        "us-core-observation-pregnancystatus",
        "subject",
        &["Patient"],
    ),
    (
        "us-core-observation-pregnancyintent",
        "subject",
        &["Patient"],
    ),
    ("us-core-observation-occupation", "subject", &["Patient"]),
    ("us-core-respiratory-rate", "subject", &["Patient"]),
    ("us-core-simple-observation", "subject", &["Patient"]),
    ("us-core-heart-rate", "subject", &["Patient"]),
    ("us-core-body-temperature", "subject", &["Patient"]),
    ("pediatric-weight-for-height", "subject", &["Patient"]),
    ("us-core-pulse-oximetry", "subject", &["Patient"]),
    ("us-core-smokingstatus", "subject", &["Patient"]),
    (
        "us-core-observation-sexual-orientation",
        "subject",
        &["Patient"],
    ),
    ("us-core-head-circumference", "subject", &["Patient"]),
    ("us-core-body-height", "subject", &["Patient"]),
    ("us-core-bmi", "subject", &["Patient"]),
    (
        "us-core-observation-screening-assessment",
        "subject",
        &["Patient"],
    ),
    (
        "us-core-observation-screening-assessment",
        "hasMember",
        &["Observation"],
    ),
    (
        "us-core-observation-screening-assessment",
        "derivedFrom",
        &["Observation", "QuestionnaireResponse"],
    ),
    ("us-core-blood-pressure", "subject", &["Patient"]),
    (
        "us-core-observation-clinical-result",
        "subject",
        &["Patient"],
    ),
    ("pediatric-bmi-for-age", "subject", &["Patient"]),
    (
        "head-occipital-frontal-circumference-percentile",
        "subject",
        &["Patient"],
    ),
    ("us-core-body-weight", "subject", &["Patient"]),
    (
        "us-core-practitionerrole",
        "practitioner",
        &["Practitioner"],
    ),
    (
        "us-core-practitionerrole",
        "organization",
        &["Organization"],
    ),
    ("us-core-procedure", "subject", &["Patient"]),
    ("us-core-provenance", "agent.who", &["Organization"]),
    ("us-core-provenance", "agent.onBehalfOf", &["Organization"]),
    ("us-core-questionnaireresponse", "subject", &["Patient"]),
    ("us-core-questionnaireresponse", "author", &["Practitioner"]),
    ("us-core-relatedperson", "patient", &["Patient"]),
    ("us-core-servicerequest", "subject", &["Patient"]),
    ("us-core-servicerequest", "requester", &["Practitioner"]),
    ("us-core-specimen", "subject", &["Patient"]),
];
