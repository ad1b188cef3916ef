//! FHIR search as a certification run meets it (g10 checklist section J): the real server over
//! TLS, loaded with synthetic US Core patients appended straight to the event log.

mod fhir_common;
mod support;

use std::collections::HashSet;
use std::path::Path;

use fhir_common::authorized_client;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventLog, ExpectedRevision, NewEvent, StreamWrite};
use sphere_domain::synthetic::{self, GenerateConfig};
use support::Server;

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// Appends every resource of a small synthetic population as ResourceCreated events.
async fn load(dir: &Path, patients: u32) -> GenerateConfig {
    let config = GenerateConfig {
        patients,
        ..GenerateConfig::default()
    };
    let mut resources = Vec::new();
    synthetic::generate(&config, &mut |r| resources.push(r));
    let log = SqliteLog::open(dir).expect("open log");
    for chunk in resources.chunks(500) {
        let writes = chunk
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r["meta"]["versionId"] = json!("1");
                r["meta"]["lastUpdated"] = json!("2025-06-01T12:00:00.000Z");
                StreamWrite {
                    stream: format!(
                        "{}-{}",
                        r["resourceType"].as_str().unwrap(),
                        r["id"].as_str().unwrap()
                    ),
                    expected: ExpectedRevision::NoStream,
                    events: vec![NewEvent::new(
                        "ResourceCreated",
                        serde_json::to_vec(&r).unwrap(),
                    )],
                }
            })
            .collect();
        log.append_multi(writes).await.expect("append");
    }
    log.close().await.expect("close");
    config
}

async fn get(client: &Client, server: &Server, path: &str) -> (StatusCode, Value) {
    let r = client.get(server.url(path)).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn matches(bundle: &Value) -> Vec<&Value> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| &e["resource"])
                .collect()
        })
        .unwrap_or_default()
}

fn ids(bundle: &Value) -> Vec<String> {
    matches(bundle)
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect()
}

fn refers_to(resource: &Value, patient: &str) -> bool {
    let want = format!("Patient/{patient}");
    ["subject", "patient", "beneficiary"]
        .iter()
        .any(|k| resource[*k]["reference"].as_str() == Some(want.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn us_core_patient_searches_return_only_matching_resources() {
    let temp = tempfile::tempdir().unwrap();
    let config = load(temp.path(), 3).await;
    let server = Server::start_in(temp.path(), &[], &[]);
    let client = authorized_client(&server).await;
    let pid = synthetic::patient_id(&config, 0);
    let searches = [
        "AllergyIntolerance?patient={p}",
        "CarePlan?patient={p}&category=http://hl7.org/fhir/us/core/CodeSystem/careplan-category|assess-plan",
        "CareTeam?patient={p}&status=active",
        "Condition?patient={p}",
        "Condition?patient={p}&category=problem-list-item,encounter-diagnosis,health-concern",
        "Coverage?patient={p}",
        "Device?patient={p}",
        "DiagnosticReport?patient={p}&category=LAB",
        "DocumentReference?patient={p}",
        "Encounter?patient={p}",
        "Encounter?patient={p}&date=ge2000-01-01",
        "Goal?patient={p}",
        "Immunization?patient={p}",
        "MedicationDispense?patient={p}",
        "MedicationRequest?patient={p}&intent=order,plan,proposal",
        "Observation?patient={p}&category=laboratory",
        "Observation?patient={p}&category=vital-signs&date=ge2000",
        "Procedure?patient={p}",
        "ServiceRequest?patient={p}",
        "QuestionnaireResponse?patient={p}",
        "RelatedPerson?patient={p}",
    ];
    let mut non_empty = 0;
    for s in searches {
        let path = format!("/fhir/r4/{}", s.replace("{p}", &pid));
        let (status, bundle) = get(&client, &server, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {bundle}");
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "searchset");
        let found = matches(&bundle);
        assert!(bundle["total"].as_u64().unwrap() as usize >= found.len());
        if !found.is_empty() {
            non_empty += 1;
        }
        for r in found {
            assert!(refers_to(r, &pid), "{path} returned {}", r["id"]);
        }
    }
    assert!(non_empty >= 12, "only {non_empty} searches found data");

    // Laboratory means laboratory, whatever the case or the system spelling.
    let (_, labs) = get(
        &client,
        &server,
        &format!("/fhir/r4/Observation?patient={pid}&category={CATEGORY}|LABORATORY"),
    )
    .await;
    assert!(!matches(&labs).is_empty());
    for r in matches(&labs) {
        let codes: Vec<&str> = r["category"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["coding"].as_array().unwrap())
            .filter_map(|c| c["code"].as_str())
            .collect();
        assert!(codes.contains(&"laboratory"), "{codes:?}");
    }

    // id, Type/id, absolute URL and POST _search agree.
    let base = ids(&get(
        &client,
        &server,
        &format!("/fhir/r4/Observation?patient={pid}&_count=500"),
    )
    .await
    .1);
    assert!(!base.is_empty());
    for p in [
        format!("Patient/{pid}"),
        format!("{}/fhir/r4/Patient/{pid}", server.base),
    ] {
        let (_, b) = get(
            &client,
            &server,
            &format!("/fhir/r4/Observation?patient={p}&_count=500"),
        )
        .await;
        assert_eq!(ids(&b), base, "{p}");
    }
    let posted: Value = client
        .post(server.url("/fhir/r4/Observation/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("patient={pid}&_count=500"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&posted), base);

    // Patient searches.
    let (_, p) = get(&client, &server, &format!("/fhir/r4/Patient?_id={pid}")).await;
    assert_eq!(ids(&p), [format!("Patient/{pid}")]);
    let patient = &matches(&p)[0].clone();
    let family = patient["name"][0]["family"].as_str().unwrap();
    let prefix: String = family.chars().take(3).collect::<String>().to_uppercase();
    let (_, by_name) = get(&client, &server, &format!("/fhir/r4/Patient?name={prefix}")).await;
    assert!(ids(&by_name).contains(&format!("Patient/{pid}")));
    let gender = patient["gender"].as_str().unwrap();
    let birth = patient["birthDate"].as_str().unwrap();
    let (_, combo) = get(
        &client,
        &server,
        &format!("/fhir/r4/Patient?name={prefix}&gender={gender}&birthdate={birth}"),
    )
    .await;
    assert!(ids(&combo).contains(&format!("Patient/{pid}")));
    let ident = &patient["identifier"][0];
    let (_, by_ident) = get(
        &client,
        &server,
        &format!(
            "/fhir/r4/Patient?identifier={}|{}",
            ident["system"].as_str().unwrap(),
            ident["value"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(ids(&by_ident), [format!("Patient/{pid}")]);

    // Compartment search is the same as patient=.
    let (_, comp) = get(
        &client,
        &server,
        &format!("/fhir/r4/Patient/{pid}/Observation?_count=500"),
    )
    .await;
    let mut a = ids(&comp);
    let mut b = base.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_links_page_through_twenty_pages_while_writes_continue() {
    let temp = tempfile::tempdir().unwrap();
    let config = load(temp.path(), 1).await;
    let server = Server::start_in(temp.path(), &[], &[]);
    let client = authorized_client(&server).await;
    let pid = synthetic::patient_id(&config, 0);
    let (status, mut page) = get(
        &client,
        &server,
        &format!("/fhir/r4/Observation?patient={pid}&_count=2"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let total = page["total"].as_u64().unwrap() as usize;
    assert!(total >= 42, "need 21 pages, have {total} observations");
    let mut seen = HashSet::new();
    for n in 0..21 {
        for id in ids(&page) {
            assert!(seen.insert(id.clone()), "{id} twice (page {n})");
        }
        if n == 5 {
            // A write in the middle of paging must not disturb the cursor.
            let r = client
                .post(server.url("/fhir/r4/Observation"))
                .header("content-type", "application/fhir+json")
                .json(&json!({"resourceType": "Observation", "status": "final",
                    "category": [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}],
                    "code": {"text": "late"}, "subject": {"reference": format!("Patient/{pid}")}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .unwrap_or_else(|| panic!("no next link on page {n}"))["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = client.get(&next).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{next}");
        page = r.json().await.unwrap();
    }
    let prev = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "previous")
        .expect("previous link")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let back: Value = client
        .get(&prev)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(matches(&back).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_are_400_and_unknown_parameters_are_reported_or_refused() {
    let temp = tempfile::tempdir().unwrap();
    load(temp.path(), 1).await;
    let server = Server::start_in(temp.path(), &[], &[]);
    let client = authorized_client(&server).await;
    for path in [
        "/fhir/r4/Observation?date=notadate",
        "/fhir/r4/Observation?value-quantity=abc",
        "/fhir/r4/Observation?_count=x",
        "/fhir/r4/Observation?subject:missing=maybe",
    ] {
        let (status, body) = get(&client, &server, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{path}");
    }
    let (status, body) = get(&client, &server, "/fhir/r4/Observation?foo=bar&_count=1").await;
    assert_eq!(status, StatusCode::OK);
    let outcome = body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["search"]["mode"] == "outcome")
        .expect("an outcome entry");
    assert!(outcome["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("foo"));
    let r = client
        .get(server.url("/fhir/r4/Observation?foo=bar"))
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (status, _) = get(&client, &server, "/fhir/r4/Unicorn?name=x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn includes_revincludes_and_everything() {
    let temp = tempfile::tempdir().unwrap();
    let config = load(temp.path(), 3).await;
    let server = Server::start_in(temp.path(), &[], &[]);
    let client = authorized_client(&server).await;
    let mut medications = 0;
    for i in 0..3 {
        let pid = synthetic::patient_id(&config, i);
        let (_, b) = get(&client, &server, &format!("/fhir/r4/MedicationRequest?patient={pid}&intent=order&_include=MedicationRequest:medication&_revinclude=Provenance:target")).await;
        let included: Vec<&Value> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["search"]["mode"] == "include")
            .map(|e| &e["resource"])
            .collect();
        medications += included
            .iter()
            .filter(|r| r["resourceType"] == "Medication")
            .count();
        if !matches(&b).is_empty() {
            assert!(
                included.iter().any(|r| r["resourceType"] == "Provenance"),
                "{pid}"
            );
        }
    }
    assert!(medications > 0, "no Medication was included");

    let pid = synthetic::patient_id(&config, 0);
    let (status, all) = get(
        &client,
        &server,
        &format!("/fhir/r4/Patient/{pid}/$everything?_count=1000"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let types: HashSet<&str> = matches(&all)
        .iter()
        .filter_map(|r| r["resourceType"].as_str())
        .collect();
    for t in [
        "Patient",
        "Observation",
        "Encounter",
        "Condition",
        "Practitioner",
        "Organization",
    ] {
        assert!(types.contains(t), "$everything lacks {t}: {types:?}");
    }
    let other = format!("Patient/{}", synthetic::patient_id(&config, 1));
    assert!(!ids(&all).contains(&other));
    let (_, only) = get(
        &client,
        &server,
        &format!("/fhir/r4/Patient/{pid}/$everything?_type=Condition&_count=1000"),
    )
    .await;
    assert!(matches(&only)
        .iter()
        .all(|r| r["resourceType"] == "Condition"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_after_a_write_sees_the_write() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    for n in 0..5 {
        let family = format!("Visible{n}");
        let r = client
            .post(server.url("/fhir/r4/Patient"))
            .header("content-type", "application/fhir+json")
            .json(&json!({"resourceType": "Patient", "name": [{"family": family}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let (status, b) = get(
            &client,
            &server,
            &format!("/fhir/r4/Patient?family={family}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(matches(&b).len(), 1, "{b}");
    }
}

/// Follows `next` links from `path`, returning every match's `Type/id` in page order.
async fn all_pages(client: &Client, server: &Server, path: &str) -> Vec<String> {
    let (status, mut page) = get(client, server, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {page}");
    let mut out = ids(&page);
    while let Some(next) = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .and_then(|l| l["url"].as_str())
        .map(str::to_owned)
    {
        page = client
            .get(&next)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        out.extend(ids(&page));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_search_spans_the_named_types_in_one_paged_list() {
    let temp = tempfile::tempdir().unwrap();
    let config = load(temp.path(), 2).await;
    let server = Server::start_in(temp.path(), &[], &[]);
    let client = authorized_client(&server).await;
    let pid = synthetic::patient_id(&config, 0);

    let mut expected = all_pages(&client, &server, "/fhir/r4/Patient?_count=1000").await;
    expected.extend(all_pages(&client, &server, "/fhir/r4/Condition?_count=1000").await);
    expected.sort();
    let first_page = "/fhir/r4?_type=Patient,Condition&_count=4";
    let (_, page) = get(&client, &server, first_page).await;
    assert_eq!(ids(&page).len(), 4);
    assert!(
        page["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next"),
        "the types span more than one page"
    );
    let mut got = all_pages(&client, &server, first_page).await;
    got.sort();
    assert_eq!(got, expected, "every Patient and Condition exactly once");

    // A search parameter common to both, and the POST form.
    let mut by_patient = all_pages(
        &client,
        &server,
        &format!("/fhir/r4?_type=Condition,Encounter&patient={pid}&_count=3"),
    )
    .await;
    by_patient.sort();
    let mut each = all_pages(
        &client,
        &server,
        &format!("/fhir/r4/Condition?patient={pid}"),
    )
    .await;
    each.extend(
        all_pages(
            &client,
            &server,
            &format!("/fhir/r4/Encounter?patient={pid}"),
        )
        .await,
    );
    each.sort();
    assert!(!each.is_empty());
    assert_eq!(by_patient, each);
    let posted: Value = client
        .post(server.url("/fhir/r4/_search"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_type=Patient&_id={pid}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&posted), vec![format!("Patient/{pid}")]);

    // Without _type, only parameters every resource has.
    let (status, bundle) = get(&client, &server, &format!("/fhir/r4?_id={pid}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&bundle), vec![format!("Patient/{pid}")]);
    for bad in [
        "/fhir/r4?patient=x",
        "/fhir/r4?_type=Unicorn",
        "/fhir/r4?_type=Patient&birthdate=notadate",
    ] {
        let (status, body) = get(&client, &server, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_modifiers_expand_value_sets_and_text_searches_find_words() {
    let temp = tempfile::tempdir().unwrap();
    let config = load(temp.path(), 1).await;
    let server = Server::start_in(temp.path(), &[], &[]);
    let client = authorized_client(&server).await;
    let pid = synthetic::patient_id(&config, 0);
    let vs = "http://hl7.org/fhir/ValueSet/observation-status";

    let all = all_pages(
        &client,
        &server,
        &format!("/fhir/r4/Observation?patient={pid}"),
    )
    .await;
    assert!(!all.is_empty());
    let within = all_pages(
        &client,
        &server,
        &format!("/fhir/r4/Observation?patient={pid}&status:in={vs}"),
    )
    .await;
    assert_eq!(within, all);
    let outside = all_pages(
        &client,
        &server,
        &format!("/fhir/r4/Observation?patient={pid}&status:not-in={vs}"),
    )
    .await;
    assert!(outside.is_empty());
    let (status, body) = get(
        &client,
        &server,
        "/fhir/r4/Observation?status:in=http://example.org/ValueSet/unknown",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("not known"));

    // A narrative and a string only this resource has.
    let mut patient = json!({"resourceType": "Patient", "id": "narrated",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Zymurgist of <b>Ostrava</b></p></div>"},
        "name": [{"family": "Quillfeather", "given": ["Ada"]}], "gender": "female"});
    let r = client
        .put(server.url("/fhir/r4/Patient/narrated"))
        .header("content-type", "application/fhir+json")
        .json(&patient)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let narrated = vec!["Patient/narrated".to_owned()];
    for (query, expected) in [
        ("_text=zymurg", narrated.clone()),
        ("_text=ostrava zymurgist", narrated.clone()),
        ("_text=quillfeather", vec![]),
        ("_content=quillfeath", narrated.clone()),
        ("_content=OSTRAVA", narrated.clone()),
        ("_content=nowhere-to-be-found", vec![]),
        ("_text=nothing,zymurgist", narrated.clone()),
        ("_text=!!!&_id=narrated", narrated.clone()),
    ] {
        let found = all_pages(&client, &server, &format!("/fhir/r4/Patient?{query}")).await;
        assert_eq!(found, expected, "{query}");
    }
    patient["text"]["div"] = json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">Changed</div>");
    client
        .put(server.url("/fhir/r4/Patient/narrated"))
        .header("content-type", "application/fhir+json")
        .json(&patient)
        .send()
        .await
        .unwrap();
    let found = all_pages(&client, &server, "/fhir/r4/Patient?_text=zymurg").await;
    assert!(found.is_empty(), "a new version replaces the old words");
}

/// `_summary=true` returns the elements the base definition marks as summary, at the top level
/// and inside backbone elements, and marks the result SUBSETTED; `text` and `data` split the
/// narrative from the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_modes_return_the_summary_elements_of_the_definitions() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let observation = json!({
        "resourceType": "Observation",
        "id": "summary-obs",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">BP</div>"},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": "Patient/summary-1"},
        "effectiveDateTime": "2024-03-01",
        "note": [{"text": "taken seated"}],
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}],
        "component": [{
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
            "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "N"}]}]
        }]
    });
    let r = client
        .put(server.url("/fhir/r4/Observation/summary-obs"))
        .header("content-type", "application/fhir+json")
        .json(&observation)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let first = |b: &Value| matches(b).first().copied().cloned().expect("one match");
    let (status, b) = get(
        &client,
        &server,
        "/fhir/r4/Observation?_id=summary-obs&_summary=true",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let o = first(&b);
    for kept in [
        "resourceType",
        "id",
        "meta",
        "status",
        "code",
        "subject",
        "effectiveDateTime",
        "component",
    ] {
        assert!(o.get(kept).is_some(), "{kept} is a summary element: {o}");
    }
    // R4 marks neither Observation.category nor note nor interpretation as summary.
    for dropped in ["text", "category", "note", "interpretation"] {
        assert!(
            o.get(dropped).is_none(),
            "{dropped} is not a summary element: {o}"
        );
    }
    let component = &o["component"][0];
    assert!(component.get("code").is_some() && component.get("valueQuantity").is_some());
    assert!(component.get("interpretation").is_none(), "{component}");
    assert!(o["meta"]["tag"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["code"] == "SUBSETTED"));

    let (_, b) = get(
        &client,
        &server,
        "/fhir/r4/Observation?_id=summary-obs&_summary=text",
    )
    .await;
    let o = first(&b);
    assert!(o.get("text").is_some() && o.get("status").is_none(), "{o}");
    let (_, b) = get(
        &client,
        &server,
        "/fhir/r4/Observation?_id=summary-obs&_summary=data",
    )
    .await;
    let o = first(&b);
    assert!(o.get("text").is_none() && o.get("note").is_some(), "{o}");
}
