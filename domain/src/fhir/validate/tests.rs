//! Validator tests: valid resources pass, each kind of error is reported at the right location,
//! and arbitrary JSON never makes the validator panic.

use serde_json::{json, Value};

use super::*;

fn errors(resource: &Value) -> Vec<Issue> {
    validate(resource)
        .into_iter()
        .filter(Issue::is_error)
        .collect()
}

/// Run with `US_CORE_EXAMPLES=/path/to/package/example cargo test -p sphere-domain -- --ignored`
/// to validate every example of the US Core package (not committed; see scripts/fhir-tables).
#[test]
#[ignore = "needs the US Core package examples on disk"]
fn us_core_package_examples_validate() {
    let Ok(dir) = std::env::var("US_CORE_EXAMPLES") else {
        return;
    };
    let mut failures = 0;
    let mut total = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let value: Value = serde_json::from_str(&text).expect("json");
        total += 1;
        let strict = ValidationOptions {
            base_invariants: true,
        };
        let errs: Vec<Issue> = validate_with(&value, strict)
            .into_iter()
            .filter(Issue::is_error)
            .collect();
        if !errs.is_empty() {
            failures += 1;
            println!("{}:", path.display());
            for e in errs {
                println!("  {} {} {}", e.code.as_str(), e.expression, e.message);
            }
        }
    }
    println!("{failures} of {total} examples have errors");
    assert_eq!(failures, 0);
}

/// Asserts that validating `resource` reports an error with `code` at `expression`.
#[track_caller]
fn assert_error(resource: Value, code: IssueCode, expression: &str) {
    let errs = errors(&resource);
    assert!(
        errs.iter()
            .any(|e| e.code == code && e.expression == expression),
        "expected {} at {expression}, got {errs:#?}",
        code.as_str()
    );
}

fn fixtures() -> Vec<Value> {
    serde_json::from_str(include_str!("fixtures/valid-us-core.json")).expect("fixture json")
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Shaw", "given": ["Amy", "V."]}],
        "gender": "female",
        "birthDate": "1987-02-20"
    })
}

fn us_core_patient() -> Value {
    let mut p = patient();
    p["meta"] =
        json!({"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]});
    p["identifier"] = json!([{"system": "http://hospital.example.org/mrn", "value": "12345"}]);
    p
}

fn blood_pressure() -> Value {
    fixtures()
        .into_iter()
        .find(|r| r["id"] == "bp-1")
        .expect("bp fixture")
}

#[test]
fn handcrafted_us_core_resources_are_valid() {
    let all = fixtures();
    assert!(all.len() >= 15);
    for resource in &all {
        let issues = validate(resource);
        assert!(
            !has_errors(&issues),
            "{} {} should be valid: {issues:#?}",
            resource["resourceType"],
            resource["id"]
        );
    }
}

#[test]
fn a_minimal_valid_patient_has_no_issues() {
    assert_eq!(validate(&patient()), vec![]);
    assert_eq!(validate(&us_core_patient()), vec![]);
}

#[test]
fn non_objects_and_unknown_types_are_rejected() {
    assert_error(json!([1, 2]), IssueCode::Invalid, "");
    assert_error(json!({"id": "x"}), IssueCode::Required, "");
    assert_error(
        json!({"resourceType": "Unicorn"}),
        IssueCode::NotSupported,
        "resourceType",
    );
    assert_error(
        json!({"resourceType": "DomainResource", "id": "x"}),
        IssueCode::NotSupported,
        "resourceType",
    );
    assert_error(
        json!({"resourceType": "HumanName", "family": "x"}),
        IssueCode::NotSupported,
        "resourceType",
    );
    assert_error(
        json!({"resourceType": 5}),
        IssueCode::Structure,
        "resourceType",
    );
}

#[test]
fn unknown_elements_are_reported_where_they_are() {
    let mut p = patient();
    p["foo"] = json!(1);
    assert_error(p, IssueCode::Structure, "Patient.foo");
    let mut p = patient();
    p["name"][0]["nickname"] = json!("Amy");
    assert_error(p, IssueCode::Structure, "Patient.name[0].nickname");
    let mut p = patient();
    p["contact"] = json!([{"name": {"family": "X"}, "relation": [{"text": "x"}], "colour": "red"}]);
    assert_error(p, IssueCode::Structure, "Patient.contact[0].colour");
}

#[test]
fn cardinality_and_json_shape_are_checked() {
    let mut p = patient();
    p["gender"] = json!(["female"]);
    assert_error(p, IssueCode::Structure, "Patient.gender");
    let mut p = patient();
    p["name"] = json!({"family": "Shaw"});
    assert_error(p, IssueCode::Structure, "Patient.name");
    let mut p = patient();
    p["name"] = json!([]);
    assert_error(p, IssueCode::Structure, "Patient.name");
    let mut p = patient();
    p["name"][0]["given"] = json!(["Amy", null]);
    assert_error(p, IssueCode::Structure, "Patient.name[0].given[1]");
}

#[test]
fn data_types_and_primitive_formats_are_checked() {
    let mut p = patient();
    p["active"] = json!("yes");
    assert_error(p, IssueCode::Structure, "Patient.active");
    let mut p = patient();
    p["birthDate"] = json!("1990-13-01");
    assert_error(p, IssueCode::Value, "Patient.birthDate");
    let mut p = patient();
    p["birthDate"] = json!("1990-02-30");
    assert_error(p, IssueCode::Value, "Patient.birthDate");
    let mut p = patient();
    p["name"][0]["given"][1] = json!(5);
    assert_error(p, IssueCode::Structure, "Patient.name[0].given[1]");
    let mut p = patient();
    p["id"] = json!("has spaces");
    assert_error(p, IssueCode::Value, "Patient.id");
    let mut p = patient();
    p["multipleBirthInteger"] = serde_json::from_str("2.5").expect("json");
    assert_error(p, IssueCode::Value, "Patient.multipleBirthInteger");
    let mut p = patient();
    p["name"][0]["period"] = json!({"start": "2020-01-01T10:00:00"});
    assert_error(p, IssueCode::Value, "Patient.name[0].period.start");
    let mut p = patient();
    p["name"][0]["family"] = json!({"value": "Shaw"});
    assert_error(p, IssueCode::Structure, "Patient.name[0].family");
    let mut p = patient();
    p["text"] = json!({"status": "generated", "div": "plain text"});
    assert_error(p, IssueCode::Value, "Patient.text.div");
}

#[test]
fn decimals_must_be_json_numbers_and_keep_precision() {
    let mut bp = blood_pressure();
    bp["component"][0]["valueQuantity"]["value"] = json!("120");
    assert_error(
        bp,
        IssueCode::Structure,
        "Observation.component[0].valueQuantity.value",
    );
    let text = blood_pressure().to_string();
    assert!(text.contains("80.50"), "arbitrary_precision keeps the text");
    let bp: Value = serde_json::from_str(&text.replace("80.50", "80.500")).expect("json");
    assert!(errors(&bp).is_empty());
}

#[test]
fn choice_types_are_resolved_by_suffix() {
    let mut o = blood_pressure();
    o["effectiveFoo"] = json!("2020");
    assert_error(o, IssueCode::Structure, "Observation.effectiveFoo");
    let mut o = blood_pressure();
    o["effectiveDateTime"] = json!("yesterday");
    assert_error(o, IssueCode::Value, "Observation.effectiveDateTime");
    let mut o = blood_pressure();
    o["valueBoolean"] = json!(true);
    o["valueString"] = json!("x");
    assert_error(o, IssueCode::Structure, "Observation.valueString");
}

#[test]
fn required_elements_are_reported_at_their_path() {
    let o = json!({"resourceType": "Observation", "code": {"text": "x"}});
    assert_error(o, IssueCode::Required, "Observation.status");
    let mut p = patient();
    p["link"] = json!([{"type": "seealso"}]);
    assert_error(p, IssueCode::Required, "Patient.link[0].other");
    let e = json!({"resourceType": "Encounter", "status": "finished"});
    assert_error(e, IssueCode::Required, "Encounter.class");
}

#[test]
fn references_must_be_well_formed_and_of_an_allowed_type() {
    let cases = [
        (
            json!({"reference": "Patient 123"}),
            "Observation.subject.reference",
        ),
        (
            json!({"reference": "Unicorn/1"}),
            "Observation.subject.reference",
        ),
        (
            json!({"reference": "Medication/1"}),
            "Observation.subject.reference",
        ),
        (
            json!({"reference": "Patient/1", "type": "Group"}),
            "Observation.subject.type",
        ),
        (
            json!({"reference": "urn:uuid:not-a-uuid"}),
            "Observation.subject.reference",
        ),
    ];
    for (subject, expr) in cases {
        let mut o = blood_pressure();
        o["subject"] = subject;
        assert_error(o, IssueCode::Value, expr);
    }
    for ok in [
        "Patient/pat-1/_history/2",
        "https://other.example/fhir/Patient/9",
        "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
        "Patient?identifier=http://x|1",
    ] {
        let mut o = blood_pressure();
        o["subject"] = json!({ "reference": ok });
        assert!(errors(&o).is_empty(), "{ok}: {:#?}", errors(&o));
    }
}

#[test]
fn contained_resources_follow_the_dom_rules() {
    let mut p = patient();
    p["contained"] = json!([{"resourceType": "Organization", "name": "x"}]);
    assert_error(p, IssueCode::Required, "Patient.contained[0].id");
    let mut p = patient();
    p["contained"] = json!([{"resourceType": "Organization", "id": "o", "name": "x",
        "contained": [{"resourceType": "Organization", "id": "o2", "name": "y"}]}]);
    assert_error(p, IssueCode::Invariant, "Patient.contained[0]");
    let mut p = patient();
    p["contained"] = json!([{"resourceType": "Organization", "id": "o", "name": 5}]);
    assert_error(p, IssueCode::Structure, "Patient.contained[0].name");
    let mut p = patient();
    p["managingOrganization"] = json!({"reference": "#missing"});
    assert_error(
        p,
        IssueCode::Invariant,
        "Patient.managingOrganization.reference",
    );
    let mut p = patient();
    p["contained"] = json!([{"resourceType": "Organization", "id": "o", "name": "x"}]);
    p["managingOrganization"] = json!({"reference": "#o"});
    assert!(errors(&p).is_empty(), "{:#?}", errors(&p));
    // dom-3: an unreferenced contained resource.
    p.as_object_mut()
        .expect("object")
        .remove("managingOrganization");
    assert_error(p, IssueCode::Invariant, "Patient.contained[0]");
}

#[test]
fn extensions_have_a_url_and_a_value_or_children() {
    let mut p = patient();
    p["extension"] = json!([{"valueString": "x"}]);
    assert_error(p, IssueCode::Required, "Patient.extension[0].url");
    let mut p = patient();
    p["extension"] = json!([{"url": "http://x", "valueString": "x",
        "extension": [{"url": "a", "valueCode": "b"}]}]);
    assert_error(p, IssueCode::Invariant, "Patient.extension[0]");
    let mut p = patient();
    p["extension"] = json!([{"url": "http://x", "valueUnicorn": "x"}]);
    assert_error(p, IssueCode::Structure, "Patient.extension[0].valueUnicorn");
}

#[test]
fn primitive_extensions_are_allowed_only_on_primitives() {
    let mut p = patient();
    p["_gender"] = json!({"extension": [{"url": "http://x", "valueString": "y"}]});
    assert!(errors(&p).is_empty(), "{:#?}", errors(&p));
    let mut p = patient();
    p["name"][0]["_given"] = json!([null, {"id": "g2"}]);
    assert!(errors(&p).is_empty(), "{:#?}", errors(&p));
    let mut p = patient();
    p["_name"] = json!([{"id": "x"}]);
    assert_error(p, IssueCode::Structure, "Patient._name");
    let mut p = patient();
    p["_birthDate"] = json!({"foo": 1});
    assert_error(p, IssueCode::Structure, "Patient._birthDate.foo");
}

#[test]
fn required_bindings_are_checked_when_enumerable() {
    let mut p = patient();
    p["gender"] = json!("f");
    assert_error(p, IssueCode::CodeInvalid, "Patient.gender");
    let mut o = blood_pressure();
    o["status"] = json!("done");
    assert_error(o, IssueCode::CodeInvalid, "Observation.status");
}

#[test]
fn empty_objects_violate_ele_1() {
    let mut p = patient();
    p["name"][0] = json!({});
    assert_error(p, IssueCode::Invariant, "Patient.name[0]");
    assert_error(
        json!({"resourceType": "Patient"}),
        IssueCode::Invariant,
        "Patient",
    );
}

#[test]
fn us_core_required_elements_are_enforced() {
    let mut p = us_core_patient();
    p.as_object_mut().expect("object").remove("identifier");
    assert_error(p, IssueCode::Required, "Patient.identifier");
    let mut p = us_core_patient();
    p["identifier"][0]
        .as_object_mut()
        .expect("object")
        .remove("system");
    assert_error(p, IssueCode::Required, "Patient.identifier[0].system");
    let mut p = us_core_patient();
    p.as_object_mut().expect("object").remove("gender");
    assert_error(p, IssueCode::Required, "Patient.gender");
    // The base Patient does not require them.
    let mut p = patient();
    p.as_object_mut().expect("object").remove("gender");
    assert!(errors(&p).is_empty());
}

#[test]
fn us_core_slices_and_patterns_are_enforced() {
    let mut o = blood_pressure();
    o["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "1234-5"}]});
    assert_error(o, IssueCode::Value, "Observation.code");
    let mut o = blood_pressure();
    o["category"] = json!([{"coding": [{"system":
        "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
    assert_error(o, IssueCode::Required, "Observation.category");
    let mut o = blood_pressure();
    o["component"].as_array_mut().expect("array").remove(1);
    assert_error(o, IssueCode::Required, "Observation.component");
    let mut o = blood_pressure();
    o["component"][0]["valueQuantity"]["system"] = json!("http://example.org/units");
    assert_error(
        o,
        IssueCode::Value,
        "Observation.component[0].valueQuantity.system",
    );
    let mut o = blood_pressure();
    o["component"][0]["valueQuantity"]
        .as_object_mut()
        .expect("object")
        .remove("unit");
    assert_error(
        o,
        IssueCode::Required,
        "Observation.component[0].valueQuantity.unit",
    );
}

#[test]
fn us_core_value_set_slices_need_a_member() {
    let mut c = fixtures()
        .into_iter()
        .find(|r| r["id"] == "cond-1")
        .expect("condition fixture");
    assert!(errors(&c).is_empty());
    c["category"][0]["coding"][0]["code"] = json!("encounter-diagnosis");
    assert_error(c, IssueCode::Required, "Condition.category");
}

#[test]
fn us_core_extensions_are_checked_wherever_used() {
    let race = |sub: Value| {
        let mut p = patient();
        p["extension"] = json!([{
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": sub
        }]);
        p
    };
    let omb = json!({"url": "ombCategory", "valueCoding":
        {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}});
    let text = json!({"url": "text", "valueString": "White"});
    assert!(errors(&race(json!([omb.clone(), text.clone()]))).is_empty());
    // The text sub-extension is mandatory.
    assert_error(
        race(json!([omb.clone()])),
        IssueCode::Required,
        "Patient.extension[0].extension",
    );
    // ombCategory carries a Coding, not a string.
    assert_error(
        race(json!([{"url": "ombCategory", "valueString": "White"}, text.clone()])),
        IssueCode::Structure,
        "Patient.extension[0].extension[0].valueString",
    );
    // A complex extension has no value of its own.
    let mut p = race(json!([omb, text]));
    p["extension"][0]["valueString"] = json!("x");
    assert_error(p, IssueCode::Structure, "Patient.extension[0].value");
    // (Its binding, like the other US Core extension bindings, points at VSAC value sets that
    // are not enumerable from the packages, so codes are not checked there.)
}

#[test]
fn us_core_narrowed_choice_types_are_enforced() {
    let mut o = fixtures()
        .into_iter()
        .find(|r| r["id"] == "weight-1")
        .expect("weight fixture");
    o.as_object_mut().expect("object").remove("effectivePeriod");
    o["effectiveInstant"] = json!("2024-03-01T09:00:00Z");
    assert_error(o, IssueCode::Structure, "Observation.effectiveInstant");
}

#[test]
fn base_invariants_are_evaluated_when_enabled() {
    let strict = ValidationOptions {
        base_invariants: true,
    };
    let has = |issues: Vec<Issue>, expr: &str| {
        issues
            .iter()
            .any(|i| i.code == IssueCode::Invariant && i.expression == expr && i.is_error())
    };
    let mut p = patient();
    p["name"][0]["period"] = json!({"start": "2020-02-01", "end": "2020-01-01"});
    assert!(has(validate_with(&p, strict), "Patient.name[0].period"));
    assert!(
        !has(validate(&p), "Patient.name[0].period"),
        "off by default"
    );
    let mut o = blood_pressure();
    o["dataAbsentReason"] = json!({"text": "n/a"});
    o["valueString"] = json!("x");
    // obs-6: dataAbsentReason only when there is no value.
    assert!(has(validate_with(&o, strict), "Observation"));
    // Every valid fixture and every US Core example also satisfies the base invariants.
    for r in fixtures() {
        let errs: Vec<Issue> = validate_with(&r, strict)
            .into_iter()
            .filter(Issue::is_error)
            .collect();
        assert!(errs.is_empty(), "{} {errs:#?}", r["id"]);
    }
}

#[test]
fn us_core_invariants_are_evaluated() {
    let mut lab = fixtures()
        .into_iter()
        .find(|r| r["id"] == "lab-1")
        .expect("lab fixture");
    lab.as_object_mut().expect("object").remove("valueQuantity");
    // us-core-2: a value or a data absent reason.
    assert_error(lab.clone(), IssueCode::Invariant, "Observation");
    lab["valueQuantity"] = json!({"value": 1, "system": "http://unitsofmeasure.org", "code": "mg"});
    lab["effectiveDateTime"] = json!("2024-03");
    // us-core-1: an effective dateTime is precise to the day.
    assert_error(lab, IssueCode::Invariant, "Observation.effectiveDateTime");
}

#[test]
fn us_core_extension_slices_limit_repeats() {
    let mut p = us_core_patient();
    let birthsex = json!({"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
        "valueCode": "F"});
    p["extension"] = json!([birthsex.clone(), birthsex]);
    assert_error(p, IssueCode::Structure, "Patient.extension");
}

#[test]
fn unknown_and_mismatched_profiles_are_reported() {
    let mut p = patient();
    p["meta"] = json!({"profile": ["http://example.org/StructureDefinition/mine"]});
    let issues = validate(&p);
    assert!(!has_errors(&issues));
    assert!(issues
        .iter()
        .any(|i| i.severity == Severity::Warning && i.code == IssueCode::NotSupported));
    let mut p = patient();
    p["meta"] = json!({"profile":
        ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-condition-problems-health-concerns"]});
    assert_error(p, IssueCode::Invalid, "Patient.meta.profile");
}

#[test]
fn base_structure_definitions_are_valid_claims() {
    let mut p = patient();
    p["meta"] = json!({"profile": ["http://hl7.org/fhir/StructureDefinition/Patient"]});
    assert_eq!(validate(&p), vec![]);
    p["meta"] = json!({"profile": ["http://hl7.org/fhir/StructureDefinition/Observation"]});
    assert_error(p, IssueCode::Invalid, "Patient.meta.profile");
}

#[test]
fn validate_against_applies_a_profile_not_claimed() {
    let issues = validate_against(
        &patient(),
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
    );
    assert!(issues
        .iter()
        .any(|i| i.code == IssueCode::Required && i.expression == "Patient.identifier"));
}

#[test]
fn issues_become_an_operation_outcome() {
    let mut p = patient();
    p["gender"] = json!("f");
    let oo = operation_outcome(&validate(&p));
    assert_eq!(oo["resourceType"], "OperationOutcome");
    assert_eq!(oo["issue"][0]["code"], "code-invalid");
    assert_eq!(oo["issue"][0]["expression"][0], "Patient.gender");
    assert!(errors(&oo).is_empty(), "the outcome itself is valid FHIR");
    assert_eq!(
        operation_outcome(&[])["issue"][0]["severity"],
        "information"
    );
}

#[test]
fn deep_nesting_does_not_overflow() {
    let mut item = json!({"linkId": "leaf", "type": "display"});
    for i in 0..200 {
        item = json!({"linkId": format!("l{i}"), "type": "group", "item": [item]});
    }
    let q = json!({"resourceType": "Questionnaire", "status": "active", "item": [item]});
    let issues = validate(&q);
    assert!(issues.iter().any(|i| i.code == IssueCode::TooCostly));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            // Decimal text of any shape, kept verbatim by arbitrary_precision.
            (
                any::<i64>(),
                prop::option::of(0u32..100_000),
                prop::option::of(-400i32..400)
            )
                .prop_map(|(int, frac, exp)| {
                    let mut text = int.to_string();
                    if let Some(f) = frac {
                        text.push_str(&format!(".{f}"));
                    }
                    if let Some(e) = exp {
                        text.push_str(&format!("e{e}"));
                    }
                    serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
                }),
            prop_oneof![
                Just("Patient".to_owned()),
                Just("Observation".to_owned()),
                Just("#x".to_owned()),
                Just("Patient/1".to_owned()),
                Just("2024-02-30".to_owned()),
                ".{0,12}",
            ]
            .prop_map(Value::String),
        ];
        let keys = prop_oneof![
            Just("resourceType".to_owned()),
            Just("id".to_owned()),
            Just("name".to_owned()),
            Just("_name".to_owned()),
            Just("extension".to_owned()),
            Just("contained".to_owned()),
            Just("reference".to_owned()),
            Just("valueQuantity".to_owned()),
            Just("meta".to_owned()),
            Just("profile".to_owned()),
            Just("component".to_owned()),
            Just("item".to_owned()),
            "[a-zA-Z_]{1,8}",
        ];
        leaf.prop_recursive(6, 64, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((keys.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// A valid resource with one random element added or replaced at the top or one level down.
    fn mutated_resource() -> impl Strategy<Value = Value> {
        let all = fixtures();
        (0..all.len(), "[a-zA-Z_]{1,10}", arb_json(), any::<bool>()).prop_map(
            move |(i, key, value, nested)| {
                let mut r = all[i].clone();
                if let Some(obj) = r.as_object_mut() {
                    let target = if nested {
                        obj.values_mut().find_map(|v| match v {
                            Value::Object(o) => Some(o),
                            Value::Array(a) => a.first_mut().and_then(Value::as_object_mut),
                            _ => None,
                        })
                    } else {
                        None
                    };
                    match target {
                        Some(o) => {
                            o.insert(key, value);
                        }
                        None => {
                            obj.insert(key, value);
                        }
                    }
                }
                r
            },
        )
    }

    proptest! {
        // 512 cases by default; PROPTEST_CASES=20000 for a deeper run.
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512)
        ))]

        #[test]
        fn validator_never_panics_on_arbitrary_json(v in arb_json()) {
            let _ = validate(&v);
            let mut r = v.clone();
            if let Some(o) = r.as_object_mut() {
                o.insert("resourceType".into(), json!("Patient"));
            }
            let _ = validate(&r);
            let _ = validate_against(
                &r,
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-blood-pressure",
            );
        }

        #[test]
        fn validator_never_panics_on_mutated_resources(r in mutated_resource()) {
            let _ = validate(&r);
            let _ = validate_with(&r, ValidationOptions { base_invariants: true });
        }
    }
}

/// Writes our verdicts for `scripts/fhir-tables/crosscheck.mjs`: reads resources (one JSON per
/// line) from `CROSSCHECK_IN` and writes one line of error issues per resource to `CROSSCHECK_OUT`.
#[test]
#[ignore = "driven by scripts/fhir-tables/crosscheck.mjs"]
fn crosscheck_verdicts() {
    let (Ok(input), Ok(output)) = (
        std::env::var("CROSSCHECK_IN"),
        std::env::var("CROSSCHECK_OUT"),
    ) else {
        return;
    };
    let text = std::fs::read_to_string(input).expect("read input");
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).expect("json line");
        let strict = ValidationOptions {
            base_invariants: true,
        };
        let errs: Vec<Value> = validate_with(&value, strict)
            .iter()
            .filter(|i| i.is_error())
            .map(|e| json!({"code": e.code.as_str(), "expression": e.expression, "message": e.message}))
            .collect();
        out.push_str(&Value::Array(errs).to_string());
        out.push('\n');
    }
    std::fs::write(output, out).expect("write output");
}

/// Prints table parse time and validation throughput; run with
/// `cargo test -p sphere-domain --release -- --ignored --nocapture validator_throughput`.
#[test]
#[ignore = "timing report, not a check"]
fn validator_throughput() {
    let start = std::time::Instant::now();
    let _ = crate::fhir::definitions::definitions();
    let _ = crate::fhir::search_parameters("Patient");
    let _ = crate::fhir::profiles_for("Patient");
    let _ = crate::fhir::capability();
    println!("tables parsed in {:?}", start.elapsed());
    println!(
        "invariants not compiled: {:?}",
        crate::fhir::invariants::not_compiled()
    );
    let all = fixtures();
    let rounds = 2_000;
    let start = std::time::Instant::now();
    let mut issues = 0;
    for _ in 0..rounds {
        for r in &all {
            issues += validate(r).len();
        }
    }
    let n = rounds * all.len();
    let elapsed = start.elapsed();
    println!(
        "{n} validations in {elapsed:?}: {:.0}/s ({issues} issues)",
        n as f64 / elapsed.as_secs_f64()
    );
    let strict = ValidationOptions {
        base_invariants: true,
    };
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for r in &all {
            issues += validate_with(r, strict).len();
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{n} validations with base invariants in {elapsed:?}: {:.0}/s ({issues} issues in all)",
        n as f64 / elapsed.as_secs_f64()
    );
}
