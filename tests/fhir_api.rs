//! The FHIR REST interactions (not search) as a client meets them: the real server over TLS.

mod fhir_common;
mod support;

use base64::Engine;
use fhir_common::authorized_client;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::Server;

const FHIR_JSON: &str = "application/fhir+json";

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": family}],
        "name": [{"family": family, "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    })
}

fn observation(subject: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    })
}

async fn create(client: &Client, server: &Server, resource: &Value) -> (String, Value) {
    let t = resource["resourceType"].as_str().unwrap();
    let r = client
        .post(server.url(&format!("/fhir/r4/{t}")))
        .header("content-type", FHIR_JSON)
        .json(resource)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    (body["id"].as_str().unwrap().to_owned(), body)
}

async fn assert_outcome(r: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(FHIR_JSON),
        "{:?}",
        r.headers()
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body
}

#[tokio::test]
async fn create_then_read_returns_exactly_the_stored_resource_with_version_headers() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let r = client
        .post(server.url("/fhir/r4/Patient"))
        .header("content-type", FHIR_JSON)
        .json(&{
            // A client-supplied id is ignored on create.
            let mut p = patient("Lovelace");
            p["id"] = json!("ignored");
            p
        })
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    assert!(r.headers().contains_key("last-modified"));
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "server-assigned uuid id: {id}"
    );
    assert_eq!(id, id.to_lowercase());
    assert_eq!(
        location,
        server.url(&format!("/fhir/r4/Patient/{id}/_history/1"))
    );
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(created["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    let read = client
        .get(server.url(&format!("/fhir/r4/Patient/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["etag"], "W/\"1\"");
    let read: Value = read.json().await.unwrap();
    assert_eq!(read, created);

    // If-None-Match with the current version: 304 without a body.
    let again = client
        .get(server.url(&format!("/fhir/r4/Patient/{id}")))
        .header("if-none-match", "W/\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // _pretty prints the same resource over several lines.
    let pretty = client
        .get(server.url(&format!("/fhir/r4/Patient/{id}?_pretty=true&_format=json")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pretty.lines().count() > 5);
    assert_eq!(serde_json::from_str::<Value>(&pretty).unwrap(), created);
}

#[tokio::test]
async fn update_versions_a_resource_and_vread_and_history_page_through_them() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let (id, mut resource) = create(&client, &server, &patient("Hopper")).await;
    for n in 2..=5 {
        resource["gender"] = json!(if n % 2 == 0 { "male" } else { "female" });
        let r = client
            .put(server.url(&format!("/fhir/r4/Patient/{id}")))
            .header("content-type", FHIR_JSON)
            .json(&resource)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["etag"], format!("W/\"{n}\"").as_str());
    }
    let v1: Value = client
        .get(server.url(&format!("/fhir/r4/Patient/{id}/_history/1")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["meta"]["versionId"], "1");
    assert_eq!(v1["gender"], "female");

    // Instance history, two per page, newest first, following `next` links.
    let mut url = server.url(&format!("/fhir/r4/Patient/{id}/_history?_count=2"));
    let mut versions = Vec::new();
    loop {
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(page["type"], "history");
        for e in page["entry"].as_array().unwrap() {
            versions.push(
                e["resource"]["meta"]["versionId"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        match page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
        {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    assert_eq!(versions, ["5", "4", "3", "2", "1"]);

    // Type and system history list every version too.
    let type_history: Value = client
        .get(server.url("/fhir/r4/Patient/_history?_count=100"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let type_versions: Vec<&str> = type_history["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(type_versions, ["5", "4", "3", "2", "1"], "newest first");
    let since = v1["meta"]["lastUpdated"].as_str().unwrap();
    let system: Value = client
        .get(server.url(&format!(
            "/fhir/r4/_history?_since={}&_count=3",
            since.replace('+', "%2B")
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(system["entry"].as_array().unwrap().len(), 3);
    assert!(system["link"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["relation"] == "next"));
}

#[tokio::test]
async fn concurrent_updates_with_the_same_if_match_never_both_win() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let (id, mut resource) = create(&client, &server, &patient("Turing")).await;
    // A real change (an unchanged PUT writes nothing and wins nothing).
    resource["gender"] = json!("male");
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let client = client.clone();
        let url = server.url(&format!("/fhir/r4/Patient/{id}"));
        let resource = resource.clone();
        tasks.push(tokio::spawn(async move {
            client
                .put(url)
                .header("content-type", FHIR_JSON)
                .header("if-match", "W/\"1\"")
                .json(&resource)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::PRECONDITION_FAILED => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((ok, refused), (1, 11));
    // A stale If-Match afterwards is refused with an OperationOutcome.
    let r = client
        .put(server.url(&format!("/fhir/r4/Patient/{id}")))
        .header("content-type", FHIR_JSON)
        .header("if-match", "W/\"1\"")
        .json(&resource)
        .send()
        .await
        .unwrap();
    assert_outcome(r, StatusCode::PRECONDITION_FAILED).await;
}

#[tokio::test]
async fn update_as_create_and_prefer_return_minimal_and_operation_outcome() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let mut p = patient("Curie");
    p["id"] = json!("chosen-id");
    let r = client
        .put(server.url("/fhir/r4/Patient/chosen-id"))
        .header("content-type", FHIR_JSON)
        .header("prefer", "return=minimal")
        .json(&p)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .ends_with("/fhir/r4/Patient/chosen-id/_history/1"));
    assert!(r.bytes().await.unwrap().is_empty());
    let r = client
        .put(server.url("/fhir/r4/Patient/chosen-id"))
        .header("content-type", FHIR_JSON)
        .header("prefer", "return=OperationOutcome")
        .json(&p)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn a_deleted_resource_reads_as_410_gone() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let (id, _) = create(&client, &server, &patient("Noether")).await;
    let url = server.url(&format!("/fhir/r4/Patient/{id}"));
    let r = client.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["etag"], "W/\"2\"");
    assert_outcome(r, StatusCode::GONE).await;
    // Deleting again changes nothing.
    assert_eq!(
        client.delete(&url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let history: Value = client
        .get(format!("{url}/_history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = history["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    // The old version is still readable by vread.
    assert_eq!(
        client
            .get(format!("{url}/_history/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn transaction_rewrites_urn_uuid_references_and_commits_everything() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
             "resource": observation("urn:uuid:22222222-2222-4222-8222-222222222222"),
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
             "resource": patient("Franklin"),
             "request": {"method": "POST", "url": "Patient"}},
        ]
    });
    let r = client
        .post(server.url("/fhir/r4"))
        .header("content-type", FHIR_JSON)
        .json(&bundle)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let response: Value = r.json().await.unwrap();
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    let obs_location = entries[0]["response"]["location"].as_str().unwrap();
    let patient_location = entries[1]["response"]["location"].as_str().unwrap();
    let patient_ref = patient_location.split("/_history").next().unwrap();
    let obs: Value = client
        .get(server.url(&format!(
            "/fhir/r4/{}",
            obs_location.split("/_history").next().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(obs["subject"]["reference"], patient_ref);
}

#[tokio::test]
async fn a_failed_transaction_leaves_no_trace() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let (id, existing) = create(&client, &server, &patient("Meitner")).await;
    let before: Value = client
        .get(server.url("/fhir/r4/_history?_count=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Second entry invalid (gender is a code from a required value set): nothing is written.
    let mut bad = patient("Bad");
    bad["gender"] = json!("not-a-gender");
    let mut changed = existing.clone();
    changed["gender"] = json!("male");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient("Good"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
            {"resource": changed, "request": {"method": "PUT", "url": format!("Patient/{id}")}},
        ]
    });
    let r = client
        .post(server.url("/fhir/r4"))
        .header("content-type", FHIR_JSON)
        .json(&bundle)
        .send()
        .await
        .unwrap();
    let outcome = assert_outcome(r, StatusCode::BAD_REQUEST).await;
    assert!(
        outcome["issue"][0]["expression"][0]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[1].resource"),
        "{outcome}"
    );
    // A stale ifMatch fails the whole transaction too.
    let stale = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": patient("Good"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": existing, "request": {"method": "PUT", "url": format!("Patient/{id}"), "ifMatch": "W/\"7\""}},
        ]
    });
    let r = client
        .post(server.url("/fhir/r4"))
        .header("content-type", FHIR_JSON)
        .json(&stale)
        .send()
        .await
        .unwrap();
    assert_outcome(r, StatusCode::PRECONDITION_FAILED).await;
    let after: Value = client
        .get(server.url("/fhir/r4/_history?_count=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before["entry"], after["entry"]);
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_on_their_own() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let (id, _) = create(&client, &server, &patient("Lamarr")).await;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("One"), "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "gender": 7}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": format!("Patient/{id}")}},
            {"request": {"method": "GET", "url": "Patient/does-not-exist"}},
        ]
    });
    let r: Value = client
        .post(server.url("/fhir/r4"))
        .header("content-type", FHIR_JSON)
        .json(&bundle)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["type"], "batch-response");
    let status: Vec<&str> = r["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        status,
        ["201 Created", "400 Bad Request", "200 OK", "404 Not Found"]
    );
    assert_eq!(r["entry"][2]["resource"]["id"], id.as_str());
    assert_eq!(
        r["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
}

#[tokio::test]
async fn conditional_create_finds_the_existing_resource_instead_of_writing() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let (id, _) = create(&client, &server, &patient("Goodall")).await;
    let r = client
        .post(server.url("/fhir/r4/Patient"))
        .header("content-type", FHIR_JSON)
        .header("if-none-exist", "identifier=urn:test:mrn|Goodall")
        .json(&patient("Goodall"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], id.as_str());
    let r = client
        .post(server.url("/fhir/r4/Patient"))
        .header("content-type", FHIR_JSON)
        .header("if-none-exist", "identifier=urn:test:mrn|Someone-else")
        .json(&patient("Someone-else"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn bad_input_gets_an_operation_outcome_and_writes_nothing() {
    let server = Server::start_in(
        tempfile::tempdir().unwrap().keep().as_path(),
        &[],
        &[("SPHERE_MAX_BODY_BYTES", "4096")],
    );
    let client = authorized_client(&server).await;
    let post = |body: String, content_type: &'static str| {
        client
            .post(server.url("/fhir/r4/Patient"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_outcome(
        post("{not json".into(), FHIR_JSON).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_outcome(
        post("[]".into(), FHIR_JSON).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_outcome(
        post("<Patient/>".into(), "application/fhir+xml")
            .await
            .unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    let huge =
        json!({"resourceType": "Patient", "name": [{"text": "x".repeat(10_000)}]}).to_string();
    assert_outcome(
        post(huge, FHIR_JSON).await.unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    let invalid = json!({"resourceType": "Patient", "birthDate": "yesterday", "unknownElement": 1});
    let outcome = assert_outcome(
        post(invalid.to_string(), FHIR_JSON).await.unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let expressions: Vec<&str> = outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    assert!(expressions.contains(&"Patient.birthDate"), "{outcome}");
    // Wrong type in the body, unknown type in the URL, id mismatch.
    assert_outcome(
        post(observation("Patient/1").to_string(), FHIR_JSON)
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    let r = client
        .post(server.url("/fhir/r4/Spaceship"))
        .header("content-type", FHIR_JSON)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_outcome(r, StatusCode::NOT_FOUND).await;
    assert_outcome(
        client
            .get(server.url("/fhir/r4/Spaceship/1"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    let mut p = patient("Mismatch");
    p["id"] = json!("a");
    let r = client
        .put(server.url("/fhir/r4/Patient/b"))
        .header("content-type", FHIR_JSON)
        .json(&p)
        .send()
        .await
        .unwrap();
    assert_outcome(r, StatusCode::BAD_REQUEST).await;
    // XML is not served.
    let r = client
        .get(server.url("/fhir/r4/metadata"))
        .header("accept", "application/fhir+xml")
        .send()
        .await
        .unwrap();
    assert_outcome(r, StatusCode::NOT_ACCEPTABLE).await;
    let r = client
        .get(server.url("/fhir/r4/metadata?_format=xml"))
        .send()
        .await
        .unwrap();
    assert_outcome(r, StatusCode::NOT_ACCEPTABLE).await;
    assert_outcome(
        client
            .get(server.url("/fhir/r4/Patient/nope"))
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
    )
    .await;
    // Nothing was written by any of it, and the server still serves.
    let history: Value = client
        .get(server.url("/fhir/r4/_history"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["entry"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn metadata_is_a_capability_statement_with_smart_and_bulk_data_and_cors() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    for path in ["/metadata", "/fhir/r4/metadata"] {
        let r = client
            .get(server.url(path))
            .header("origin", "https://app.example.org")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://app.example.org"
        );
        let cs: Value = r.json().await.unwrap();
        assert_eq!(cs["resourceType"], "CapabilityStatement");
        assert_eq!(cs["fhirVersion"], "4.0.1");
        let instantiates: Vec<&str> = cs["instantiates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(instantiates
            .contains(&"http://hl7.org/fhir/us/core/CapabilityStatement/us-core-server"));
        assert!(
            instantiates.contains(&"http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data")
        );
        let rest = &cs["rest"][0];
        let oauth = &rest["security"]["extension"][0];
        assert_eq!(
            oauth["url"],
            "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        );
        let names: Vec<&str> = oauth["extension"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["url"].as_str().unwrap())
            .collect();
        for n in [
            "token",
            "authorize",
            "revoke",
            "introspect",
            "register",
            "manage",
        ] {
            assert!(names.contains(&n), "{n}");
        }
        let resources = rest["resource"].as_array().unwrap();
        let group = resources.iter().find(|r| r["type"] == "Group").unwrap();
        assert!(group["operation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "export"));
        let condition = resources.iter().find(|r| r["type"] == "Condition").unwrap();
        assert!(condition["supportedProfile"].as_array().unwrap().len() >= 2);
        assert!(!condition["searchParam"].as_array().unwrap().is_empty());
    }
    // A CORS preflight on the API.
    let r = client
        .request(reqwest::Method::OPTIONS, server.url("/fhir/r4/Patient"))
        .header("origin", "https://app.example.org")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
}

#[tokio::test]
async fn validate_operation_reports_issues_without_writing() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let r = client
        .post(server.url("/fhir/r4/Patient/$validate"))
        .header("content-type", FHIR_JSON)
        .json(&json!({"resourceType": "Patient", "gender": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let outcome: Value = r.json().await.unwrap();
    assert!(outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["severity"] == "error"));
    let ok: Value = client
        .post(server.url("/fhir/r4/Patient/$validate"))
        .header("content-type", FHIR_JSON)
        .json(&patient("Valid"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ok["issue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["severity"] != "error"),
        "{ok}"
    );
}

const JSON_PATCH: &str = "application/json-patch+json";

async fn patch(
    client: &Client,
    server: &Server,
    path: &str,
    body: &Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .patch(server.url(path))
        .header("content-type", JSON_PATCH)
        .body(body.to_string());
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn patch_applies_a_json_patch_as_a_new_version_or_changes_nothing() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let (id, _) = create(&client, &server, &patient("Noether")).await;
    let path = format!("/fhir/r4/Patient/{id}");

    let r = patch(
        &client,
        &server,
        &path,
        &json!([
            {"op": "test", "path": "/gender", "value": "female"},
            {"op": "replace", "path": "/birthDate", "value": "1882-03-23"},
            {"op": "add", "path": "/name/0/given/-", "value": "Emmy"},
            {"op": "remove", "path": "/identifier"}
        ]),
        Some("W/\"1\""),
    )
    .await;
    let status = r.status();
    let etag = r.headers().get("etag").cloned();
    let patched: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(etag.unwrap(), "W/\"2\"");
    assert_eq!(patched["birthDate"], "1882-03-23");
    assert_eq!(patched["name"][0]["given"], json!(["Ada", "Emmy"]));
    assert!(patched.get("identifier").is_none());
    let read: Value = client
        .get(server.url(&path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read, patched, "a read returns what the patch stored");

    // A stale If-Match, a failing test, an invalid result, a change of id: refused, nothing written.
    for (body, if_match, status) in [
        (
            json!([{"op": "replace", "path": "/gender", "value": "male"}]),
            Some("W/\"1\""),
            StatusCode::PRECONDITION_FAILED,
        ),
        (
            json!([{"op": "test", "path": "/gender", "value": "male"}]),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!([{"op": "replace", "path": "/gender", "value": "not-a-gender"}]),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            json!([{"op": "replace", "path": "/id", "value": "other"}]),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!([{"op": "remove", "path": "/nothing-here"}]),
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"op": "remove"}), None, StatusCode::BAD_REQUEST),
        (
            json!([{"op": "jump", "path": "/gender"}]),
            None,
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = patch(&client, &server, &path, &body, if_match).await;
        assert_outcome(r, status).await;
    }
    let r = client
        .patch(server.url(&path))
        .header("content-type", FHIR_JSON)
        .body(json!({"resourceType": "Parameters"}).to_string())
        .send()
        .await
        .unwrap();
    assert_outcome(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let r = patch(
        &client,
        &server,
        "/fhir/r4/Patient/missing",
        &json!([]),
        None,
    )
    .await;
    assert_outcome(r, StatusCode::NOT_FOUND).await;

    // A grant that may update but not read Patients cannot patch (a patch answers with the
    // resource, and a `test` operation would reveal values).
    let (builder, _) =
        fhir_common::backend_client_builder(&server, "system/Patient.u", "write only").await;
    let write_only = builder.build().unwrap();
    let r = patch(
        &write_only,
        &server,
        &path,
        &json!([{"op": "test", "path": "/gender", "value": "female"}]),
        None,
    )
    .await;
    assert_outcome(r, StatusCode::FORBIDDEN).await;

    // A patch that changes nothing writes no version.
    let r = patch(
        &client,
        &server,
        &path,
        &json!([{"op": "replace", "path": "/gender", "value": "female"}]),
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"2\"");

    // In a transaction, a Binary carrying the patch; it commits with the other entries.
    let data = base64::engine::general_purpose::STANDARD
        .encode(json!([{"op": "replace", "path": "/gender", "value": "other"}]).to_string());
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Binary", "contentType": JSON_PATCH, "data": data},
         "request": {"method": "PATCH", "url": format!("Patient/{id}")}},
        {"fullUrl": "urn:uuid:0d8f2a6e-4c4b-4b7e-9c1e-3f5a2b1c9d00", "resource": observation(&format!("Patient/{id}")),
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let r = client
        .post(server.url("/fhir/r4"))
        .header("content-type", FHIR_JSON)
        .json(&bundle)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["entry"][0]["response"]["status"], "200 OK");
    let read: Value = client
        .get(server.url(&path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["gender"], "other");
    assert_eq!(read["meta"]["versionId"], "3");

    let history: Value = client
        .get(server.url(&format!("{path}/_history")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["entry"].as_array().unwrap().len(), 3);
}

/// A read takes `_summary` and `_elements` as a search does: the subset, marked SUBSETTED,
/// with the same version headers; `_summary=count` means nothing for one resource (400).
#[tokio::test]
async fn a_read_returns_the_summary_or_the_elements_asked_for() {
    let server = Server::start();
    let client = authorized_client(&server).await;
    let mut p = patient("Subset");
    p["photo"] = json!([{"contentType": "image/png", "data": "AAAA"}]);
    p["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ada</div>"});
    let (id, _) = create(&client, &server, &p).await;
    let read = |query: &'static str| {
        let client = client.clone();
        let url = server.url(&format!("/fhir/r4/Patient/{id}?{query}"));
        async move { client.get(url).send().await.unwrap() }
    };
    let subsetted = |body: &Value| {
        body["meta"]["tag"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["code"] == "SUBSETTED"))
    };

    let r = read("_summary=true").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["etag"], "W/\"1\"");
    let body: Value = r.json().await.unwrap();
    assert!(
        body.get("name").is_some() && body.get("birthDate").is_some(),
        "{body}"
    );
    assert!(
        body.get("photo").is_none() && body.get("text").is_none(),
        "{body}"
    );
    assert!(subsetted(&body), "{body}");

    let body: Value = read("_elements=gender,birthDate")
        .await
        .json()
        .await
        .unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["birthDate", "gender", "id", "meta", "resourceType"],
        "{body}"
    );
    assert!(subsetted(&body));

    let body: Value = read("_summary=text").await.json().await.unwrap();
    assert!(
        body.get("text").is_some() && body.get("name").is_none(),
        "{body}"
    );

    let body: Value = read("_summary=false").await.json().await.unwrap();
    assert!(body.get("photo").is_some() && !subsetted(&body), "{body}");

    assert_outcome(read("_summary=count").await, StatusCode::BAD_REQUEST).await;
}
