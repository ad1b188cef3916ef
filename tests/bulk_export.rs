//! Bulk Data 2.0.0 `$export` as a client meets it: the real server over TLS, data written
//! through the FHIR REST API, exports kicked off, polled, downloaded, cancelled.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use support::Server;

const FHIR_JSON: &str = "application/fhir+json";

/// A registered backend-services app (private_key_jwt, ES384).
struct BackendApp {
    key: EncodingKey,
    client_id: String,
    scope: String,
}

const KID: &str = "bulk-test-key";

impl BackendApp {
    async fn register(server: &Server, scope: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let key = EncodingKey::from_ec_der(&pair.serialize_der());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES384).expect("jwk");
        jwk.common.key_id = Some(KID.into());
        let r = server
            .client()
            .post(server.url("/auth/register"))
            .json(&json!({
                "client_name": "Bulk test", "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [jwk]}, "scope": scope,
            }))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), StatusCode::CREATED);
        let app: Value = r.json().await.expect("registration JSON");
        Self {
            key,
            client_id: app["client_id"].as_str().expect("client_id").to_owned(),
            scope: scope.to_owned(),
        }
    }

    /// A fresh access token, and a client whose every request carries it.
    async fn client(&self, server: &Server) -> Client {
        let token_url = format!("{}/auth/token", server.base);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(KID.into());
        let id = &self.client_id;
        let assertion = jsonwebtoken::encode(
            &header,
            &json!({"iss": id, "sub": id, "aud": token_url, "exp": now + 240,
                    "jti": uuid::Uuid::new_v4().to_string()}),
            &self.key,
        )
        .expect("assertion");
        let r = server
            .client()
            .post(&token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", &self.scope),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", &assertion),
            ])
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), StatusCode::OK);
        let token: Value = r.json().await.expect("token JSON");
        let bearer = format!("Bearer {}", token["access_token"].as_str().expect("token"));
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&bearer).expect("header"),
        );
        server
            .client_builder()
            .default_headers(headers)
            .build()
            .expect("client")
    }
}

async fn backend_client(server: &Server, scope: &str) -> Client {
    BackendApp::register(server, scope)
        .await
        .client(server)
        .await
}

const SCOPE: &str = "system/*.cruds";

fn patient(id: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{"system": "urn:test:mrn", "value": id}],
        "name": [{"family": format!("Family{id}"), "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1970-01-01",
    })
}

fn observation(id: &str, patient: &str, value: i64) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    })
}

fn group(id: &str, members: &[&str]) -> Value {
    json!({
        "resourceType": "Group",
        "id": id,
        "type": "person",
        "actual": true,
        "member": members.iter().map(|m| json!({"entity": {"reference": format!("Patient/{m}")}})).collect::<Vec<_>>(),
    })
}

async fn put(client: &Client, server: &Server, resource: &Value) {
    let t = resource["resourceType"].as_str().expect("type");
    let id = resource["id"].as_str().expect("id");
    let r = client
        .put(server.url(&format!("/fhir/r4/{t}/{id}")))
        .header("content-type", FHIR_JSON)
        .json(resource)
        .send()
        .await
        .expect("PUT");
    assert!(r.status().is_success(), "PUT {t}/{id}: {}", r.status());
}

async fn delete(client: &Client, server: &Server, path: &str) {
    let r = client
        .delete(server.url(&format!("/fhir/r4/{path}")))
        .send()
        .await
        .expect("DELETE");
    assert!(r.status().is_success(), "DELETE {path}: {}", r.status());
}

/// p1, p2, p3 with two Observations each; Group g1 = {p1, p2}.
async fn seed(client: &Client, server: &Server) {
    for p in ["p1", "p2", "p3"] {
        put(client, server, &patient(p)).await;
        for n in 1..=2 {
            put(
                client,
                server,
                &observation(&format!("{p}-o{n}"), p, 60 + n),
            )
            .await;
        }
    }
    put(client, server, &group("g1", &["p1", "p2"])).await;
}

fn kickoff_request(client: &Client, server: &Server, path: &str) -> reqwest::RequestBuilder {
    client
        .get(server.url(path))
        .header("accept", FHIR_JSON)
        .header("prefer", "respond-async")
}

async fn kickoff(client: &Client, server: &Server, path: &str) -> String {
    let r = kickoff_request(client, server, path)
        .send()
        .await
        .expect("kick-off");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{path}");
    r.headers()["content-location"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

async fn wait_for_manifest(client: &Client, status_url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client.get(status_url).send().await.expect("poll");
        match r.status() {
            StatusCode::OK => {
                assert!(r.headers()["content-type"]
                    .to_str()
                    .expect("ascii")
                    .starts_with("application/json"));
                return r.json().await.expect("manifest JSON");
            }
            StatusCode::ACCEPTED => {
                assert!(r.headers().contains_key("retry-after"));
                assert!(r.headers().contains_key("x-progress"));
            }
            other => panic!("status {other}: {}", r.text().await.unwrap_or_default()),
        }
        assert!(Instant::now() < deadline, "export did not finish in 30s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every resource of every output file, by type.
async fn download_all(client: &Client, manifest: &Value, key: &str) -> Vec<Value> {
    let mut resources = Vec::new();
    for entry in manifest[key].as_array().expect("array") {
        let url = entry["url"].as_str().expect("url");
        let r = client.get(url).send().await.expect("download");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
        let text = r.text().await.expect("text");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON resource per line"))
            .collect();
        assert_eq!(lines.len() as u64, entry["count"].as_u64().expect("count"));
        for l in &lines {
            assert_eq!(l["resourceType"], entry["type"], "one type per file");
        }
        resources.extend(lines);
    }
    resources
}

fn ids_of(resources: &[Value], resource_type: &str) -> BTreeSet<String> {
    resources
        .iter()
        .filter(|r| r["resourceType"] == resource_type)
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn kickoff_without_the_required_headers_or_with_bad_parameters_is_a_400_operation_outcome() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    let url = server.url("/fhir/r4/$export");
    let cases = [
        client.get(&url).header("accept", FHIR_JSON),
        client.get(&url).header("prefer", "respond-async"),
        kickoff_request(&client, &server, "/fhir/r4/$export?_outputFormat=text/csv"),
        kickoff_request(&client, &server, "/fhir/r4/$export?_type=NotAType"),
        kickoff_request(&client, &server, "/fhir/r4/$export?_since=yesterday"),
        kickoff_request(&client, &server, "/fhir/r4/$export?_bogus=1"),
        // A token modifier the export cannot decide, an unknown parameter, a chain, a result
        // parameter, a filter on a type outside `_type`, and an organizeOutputBy other than
        // Patient.
        kickoff_request(
            &client,
            &server,
            "/fhir/r4/$export?_typeFilter=Observation%3Fcode%3Atext%3Dheart",
        ),
        kickoff_request(
            &client,
            &server,
            "/fhir/r4/$export?_typeFilter=Observation%3Fbogus%3D1",
        ),
        kickoff_request(
            &client,
            &server,
            "/fhir/r4/$export?_typeFilter=Observation%3Fsubject.name%3DAda",
        ),
        kickoff_request(
            &client,
            &server,
            "/fhir/r4/$export?_typeFilter=Observation%3F_count%3D1",
        ),
        kickoff_request(
            &client,
            &server,
            "/fhir/r4/$export?_type=Patient&_typeFilter=Observation%3Fstatus%3Dfinal",
        ),
        kickoff_request(
            &client,
            &server,
            "/fhir/r4/$export?organizeOutputBy=Encounter",
        ),
        // Patient blocks are NDJSON: they do not combine with Parquet output.
        kickoff_request(
            &client,
            &server,
            "/fhir/r4/$export?organizeOutputBy=Patient&_outputFormat=application/vnd.apache.parquet",
        ),
    ];
    for request in cases {
        let r = request.send().await.expect("kick-off");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with(FHIR_JSON));
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["resourceType"], "OperationOutcome");
    }
    for format in ["application/fhir%2Bndjson", "application/ndjson", "ndjson"] {
        let status = kickoff(
            &client,
            &server,
            &format!("/fhir/r4/$export?_outputFormat={format}"),
        )
        .await;
        // One at a time: a client may only have a few jobs running (429 beyond).
        wait_for_manifest(&client, &status).await;
    }
    let anonymous = server.client();
    let r = kickoff_request(&anonymous, &server, "/fhir/r4/$export")
        .send()
        .await
        .expect("kick-off");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = kickoff_request(&client, &server, "/fhir/r4/Group/nope/$export")
        .send()
        .await
        .expect("kick-off");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn group_export_holds_exactly_the_members_and_their_compartments() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed(&client, &server).await;
    for path in ["/fhir/r4/Group/g1/$export", "/Group/g1/$export"] {
        let status = kickoff(&client, &server, path).await;
        let manifest = wait_for_manifest(&client, &status).await;
        assert!(manifest["transactionTime"].is_string());
        assert!(manifest["request"]
            .as_str()
            .expect("request")
            .ends_with("/Group/g1/$export"));
        assert_eq!(manifest["requiresAccessToken"], true);
        assert!(manifest["error"].as_array().expect("error").is_empty());
        for entry in manifest["output"].as_array().expect("output") {
            assert!(entry["url"].as_str().expect("url").starts_with("https://"));
        }
        let resources = download_all(&client, &manifest, "output").await;
        assert_eq!(ids_of(&resources, "Patient"), set(&["p1", "p2"]));
        assert_eq!(
            ids_of(&resources, "Observation"),
            set(&["p1-o1", "p1-o2", "p2-o1", "p2-o2"])
        );
        // Group is in the Patient compartment (by `member`): the Group itself comes along.
        assert_eq!(ids_of(&resources, "Group"), set(&["g1"]));
    }
}

#[tokio::test]
async fn system_and_patient_exports_cover_everything_and_honor_type_and_elements() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed(&client, &server).await;
    let status = kickoff(&client, &server, "/fhir/r4/$export").await;
    let manifest = wait_for_manifest(&client, &status).await;
    let all = download_all(&client, &manifest, "output").await;
    assert_eq!(ids_of(&all, "Patient"), set(&["p1", "p2", "p3"]));
    assert_eq!(ids_of(&all, "Group"), set(&["g1"]));
    assert_eq!(ids_of(&all, "Observation").len(), 6);

    let status = kickoff(
        &client,
        &server,
        "/fhir/r4/Patient/$export?_type=Patient&_elements=id,gender",
    )
    .await;
    let manifest = wait_for_manifest(&client, &status).await;
    let patients = download_all(&client, &manifest, "output").await;
    assert_eq!(ids_of(&patients, "Patient"), set(&["p1", "p2", "p3"]));
    assert_eq!(patients.len(), 3);
    for p in &patients {
        assert!(p.get("name").is_none(), "_elements drops unlisted elements");
        assert_eq!(p["gender"], "female");
        assert_eq!(p["meta"]["tag"][0]["code"], "SUBSETTED");
    }
}

#[tokio::test]
async fn a_file_download_supports_ranges_and_refuses_unlisted_names() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed(&client, &server).await;
    let status = kickoff(&client, &server, "/fhir/r4/Group/g1/$export?_type=Patient").await;
    let manifest = wait_for_manifest(&client, &status).await;
    let url = manifest["output"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let whole = client
        .get(&url)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let r = client
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.expect("bytes"), whole.slice(0..10));
    let anonymous = server.client();
    assert_eq!(
        anonymous.get(&url).send().await.expect("get").status(),
        StatusCode::UNAUTHORIZED,
        "a file without a token"
    );
    let other = backend_client(&server, SCOPE).await;
    assert_eq!(
        other.get(&url).send().await.expect("get").status(),
        StatusCode::FORBIDDEN,
        "another client's file"
    );
    let hidden = url.replace("Patient.ndjson", ".Patient.ndjson.part");
    assert_eq!(
        client.get(&hidden).send().await.expect("get").status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deleting_an_export_cancels_it_and_its_status_is_then_404() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed(&client, &server).await;
    let status = kickoff(&client, &server, "/fhir/r4/$export").await;
    let manifest = wait_for_manifest(&client, &status).await;
    let file = manifest["output"][0]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    let r = client.delete(&status).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = client.get(&status).send().await.expect("poll");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(
        client.get(&file).send().await.expect("get").status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_since_export_holds_exactly_the_changes_and_the_deletions_after_the_first() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed(&client, &server).await;
    let status = kickoff(&client, &server, "/fhir/r4/Group/g1/$export").await;
    let first = wait_for_manifest(&client, &status).await;
    let since = first["transactionTime"]
        .as_str()
        .expect("transactionTime")
        .to_owned();

    // Changes: one updated and one new Observation of members, one member's Observation
    // deleted, and changes outside the Group (p3) that must not appear.
    put(&client, &server, &observation("p1-o1", "p1", 99)).await;
    put(&client, &server, &observation("p2-o3", "p2", 70)).await;
    delete(&client, &server, "Observation/p2-o2").await;
    put(&client, &server, &observation("p3-o1", "p3", 99)).await;
    delete(&client, &server, "Observation/p3-o2").await;

    let status = kickoff(
        &client,
        &server,
        &format!(
            "/fhir/r4/Group/g1/$export?_since={}",
            since.replace('+', "%2B")
        ),
    )
    .await;
    let second = wait_for_manifest(&client, &status).await;
    let changed = download_all(&client, &second, "output").await;
    assert_eq!(ids_of(&changed, "Observation"), set(&["p1-o1", "p2-o3"]));
    assert_eq!(changed.len(), 2, "nothing unchanged is exported again");
    let deleted = download_all(&client, &second, "deleted").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["type"], "transaction");
    assert_eq!(deleted[0]["entry"][0]["request"]["method"], "DELETE");
    assert_eq!(
        deleted[0]["entry"][0]["request"]["url"],
        "Observation/p2-o2"
    );
    assert!(second["transactionTime"].as_str() > Some(since.as_str()));

    // Nothing changed since the second: the third is empty.
    let since = second["transactionTime"].as_str().expect("transactionTime");
    let status = kickoff(
        &client,
        &server,
        &format!("/fhir/r4/Group/g1/$export?_since={since}"),
    )
    .await;
    let third = wait_for_manifest(&client, &status).await;
    assert!(third["output"].as_array().expect("output").is_empty());
    assert!(third["deleted"].as_array().expect("deleted").is_empty());
}

#[tokio::test]
async fn completed_exports_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_in(dir.path(), &[], &[]);
    let app = BackendApp::register(&server, SCOPE).await;
    let client = app.client(&server).await;
    seed(&client, &server).await;
    let status = kickoff(&client, &server, "/fhir/r4/Group/g1/$export").await;
    let manifest = wait_for_manifest(&client, &status).await;
    assert!(server.terminate().success());

    let server = Server::start_in(dir.path(), &[], &[]);
    let client = app.client(&server).await;
    // The port changed; the job id did not.
    let job = status.rsplit('/').next().expect("job id");
    let status = server.url(&format!("/fhir/r4/bulk/status/{job}"));
    let again = wait_for_manifest(&client, &status).await;
    assert_eq!(again["transactionTime"], manifest["transactionTime"]);
    assert_eq!(again["output"], manifest["output"]);
}

const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn categorized(id: &str, patient: &str, category: &str, status: &str) -> Value {
    let mut o = observation(id, patient, 70);
    o["status"] = json!(status);
    o["category"] = json!([{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}]);
    o
}

/// p1, p2 with a lab and a vital-signs Observation each (p2's lab is preliminary); Group g1.
async fn seed_categories(client: &Client, server: &Server) {
    for p in ["p1", "p2"] {
        put(client, server, &patient(p)).await;
        let lab_status = if p == "p1" { "final" } else { "preliminary" };
        put(
            client,
            server,
            &categorized(&format!("{p}-lab"), p, "laboratory", lab_status),
        )
        .await;
        put(
            client,
            server,
            &categorized(&format!("{p}-vs"), p, "vital-signs", "final"),
        )
        .await;
    }
    put(client, server, &group("g1", &["p1", "p2"])).await;
}

#[tokio::test]
async fn type_filter_keeps_only_resources_matching_one_of_their_types_queries() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed_categories(&client, &server).await;

    // GET: comma-separated queries; a type without a filter (Patient) is not narrowed.
    let status = kickoff(
        &client,
        &server,
        "/fhir/r4/$export?_typeFilter=Observation%3Fcategory%3Dlaboratory%26status%3Dfinal,Group%3F_id%3Dnone",
    )
    .await;
    let manifest = wait_for_manifest(&client, &status).await;
    let all = download_all(&client, &manifest, "output").await;
    assert_eq!(ids_of(&all, "Patient"), set(&["p1", "p2"]));
    assert_eq!(ids_of(&all, "Observation"), set(&["p1-lab"]));
    assert!(ids_of(&all, "Group").is_empty());

    // POST Parameters: repeated _typeFilter parameters are OR-ed for the same type; the
    // category with its system, and a date filter.
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Observation"},
        {"name": "_typeFilter", "valueString": format!("Observation?category={CATEGORY_SYSTEM}|laboratory")},
        {"name": "_typeFilter", "valueString": "Observation?status=preliminary"},
    ]});
    let r = client
        .post(server.url("/fhir/r4/Group/g1/$export"))
        .header("accept", FHIR_JSON)
        .header("prefer", "respond-async")
        .header("content-type", FHIR_JSON)
        .json(&body)
        .send()
        .await
        .expect("kick-off");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let status = r.headers()["content-location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let manifest = wait_for_manifest(&client, &status).await;
    let labs = download_all(&client, &manifest, "output").await;
    assert_eq!(ids_of(&labs, "Observation"), set(&["p1-lab", "p2-lab"]));
    assert_eq!(labs.len(), 2);

    // Each exported version is matched, not the indexed one: a lab that became vital-signs
    // after the first export appears in a _since export only if it still matches.
    let first = manifest["transactionTime"]
        .as_str()
        .expect("time")
        .to_owned();
    put(
        &client,
        &server,
        &categorized("p1-lab", "p1", "vital-signs", "final"),
    )
    .await;
    put(
        &client,
        &server,
        &categorized("p2-vs", "p2", "laboratory", "final"),
    )
    .await;
    let status = kickoff(
        &client,
        &server,
        &format!(
            "/fhir/r4/$export?_type=Observation&_typeFilter=Observation%3Fcategory%3Dlaboratory&_since={}",
            first.replace('+', "%2B")
        ),
    )
    .await;
    let manifest = wait_for_manifest(&client, &status).await;
    let changed = download_all(&client, &manifest, "output").await;
    assert_eq!(ids_of(&changed, "Observation"), set(&["p2-vs"]));
}

#[tokio::test]
async fn organize_output_by_patient_writes_a_header_then_each_patients_compartment() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed_categories(&client, &server).await;
    let status = kickoff(
        &client,
        &server,
        "/fhir/r4/Group/g1/$export?organizeOutputBy=Patient&_type=Patient,Observation",
    )
    .await;
    let manifest = wait_for_manifest(&client, &status).await;
    assert_eq!(manifest["outputOrganizedBy"], "Patient");
    let output = manifest["output"].as_array().expect("output");
    assert!(!output.is_empty());
    let mut blocks: Vec<(String, Vec<Value>)> = Vec::new();
    for entry in output {
        assert!(
            entry.get("type").is_none(),
            "organized files have no single type"
        );
        let r = client
            .get(entry["url"].as_str().expect("url"))
            .send()
            .await
            .expect("download");
        assert_eq!(r.status(), StatusCode::OK);
        let text = r.text().await.expect("text");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len() as u64, entry["count"].as_u64().expect("count"));
        assert_eq!(
            lines[0]["resourceType"], "Parameters",
            "a file starts with a header"
        );
        for line in lines {
            if line["resourceType"] == "Parameters" {
                assert_eq!(line["parameter"][0]["name"], "header");
                let reference = line["parameter"][0]["valueReference"]["reference"]
                    .as_str()
                    .expect("reference")
                    .to_owned();
                blocks.push((reference, Vec::new()));
            } else {
                blocks.last_mut().expect("a block").1.push(line);
            }
        }
    }
    let names: Vec<&str> = blocks.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(names, vec!["Patient/p1", "Patient/p2"]);
    for (reference, resources) in &blocks {
        let id = reference.trim_start_matches("Patient/");
        assert_eq!(resources[0]["resourceType"], "Patient");
        assert_eq!(resources[0]["id"], id, "the block's Patient comes first");
        assert_eq!(
            ids_of(resources, "Observation"),
            set(&[&format!("{id}-lab"), &format!("{id}-vs")])
        );
        assert_eq!(resources.len(), 3);
    }
}

#[tokio::test]
async fn a_granular_scope_exports_only_the_resources_it_allows() {
    let server = Server::start();
    let writer = backend_client(&server, SCOPE).await;
    seed_categories(&writer, &server).await;
    let scope = format!(
        "system/Observation.rs?category={CATEGORY_SYSTEM}|laboratory system/Patient.rs system/Group.rs"
    );
    let client = backend_client(&server, &scope).await;
    for path in [
        "/fhir/r4/$export",
        "/fhir/r4/Group/g1/$export?_type=Observation",
    ] {
        let status = kickoff(&client, &server, path).await;
        let manifest = wait_for_manifest(&client, &status).await;
        let all = download_all(&client, &manifest, "output").await;
        assert_eq!(
            ids_of(&all, "Observation"),
            set(&["p1-lab", "p2-lab"]),
            "{path}"
        );
        for o in all.iter().filter(|r| r["resourceType"] == "Observation") {
            assert_eq!(o["category"][0]["coding"][0]["code"], "laboratory");
        }
    }
}

const PARQUET: &str = "application/vnd.apache.parquet";

/// The rows of a downloaded Parquet file, each column by name (nulls as `None`), read with the
/// parquet crate's own reader.
fn parquet_rows(bytes: bytes::Bytes) -> Vec<std::collections::BTreeMap<String, Option<String>>> {
    use arrow_array::{Array, StringArray, TimestampMillisecondArray};
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("a Parquet file")
        .build()
        .expect("reader");
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.expect("a row group");
        let schema = batch.schema();
        for row in 0..batch.num_rows() {
            let mut values = std::collections::BTreeMap::new();
            for (n, field) in schema.fields().iter().enumerate() {
                let column = batch.column(n);
                let value = if column.is_null(row) {
                    None
                } else if let Some(text) = column.as_any().downcast_ref::<StringArray>() {
                    Some(text.value(row).to_owned())
                } else {
                    let time = column
                        .as_any()
                        .downcast_ref::<TimestampMillisecondArray>()
                        .expect("text or timestamp columns only");
                    Some(time.value(row).to_string())
                };
                values.insert(field.name().clone(), value);
            }
            rows.push(values);
        }
    }
    rows
}

#[tokio::test]
async fn a_parquet_export_writes_one_file_per_type_whose_rows_are_the_exported_resources() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    seed(&client, &server).await;
    let status = kickoff(
        &client,
        &server,
        &format!("/fhir/r4/Group/g1/$export?_outputFormat={PARQUET}"),
    )
    .await;
    let manifest = wait_for_manifest(&client, &status).await;
    let output = manifest["output"].as_array().expect("output");
    let types: BTreeSet<String> = output
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect();
    assert_eq!(types, set(&["Group", "Observation", "Patient"]));
    let mut ids = BTreeSet::new();
    for entry in output {
        let url = entry["url"].as_str().expect("url");
        assert!(url.ends_with(".parquet"), "{url}");
        let r = client.get(url).send().await.expect("download");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], PARQUET);
        let rows = parquet_rows(r.bytes().await.expect("bytes"));
        assert_eq!(rows.len() as u64, entry["count"].as_u64().expect("count"));
        for row in rows {
            let column = |name: &str| row[name].clone();
            let id = column("id").expect("id");
            let resource_type = entry["type"].as_str().expect("type");
            // The resource column is the resource as the FHIR API serves it.
            let resource: Value =
                serde_json::from_str(&column("resource").expect("resource")).expect("JSON");
            let read: Value = client
                .get(server.url(&format!("/fhir/r4/{resource_type}/{id}")))
                .send()
                .await
                .expect("read")
                .json()
                .await
                .expect("JSON");
            assert_eq!(resource, read);
            assert_eq!(column("versionId"), Some("1".to_owned()));
            let last_updated = read["meta"]["lastUpdated"].as_str().expect("lastUpdated");
            let last_updated_ms = time::OffsetDateTime::parse(
                last_updated,
                &time::format_description::well_known::Rfc3339,
            )
            .expect("instant")
            .unix_timestamp_nanos()
                / 1_000_000;
            assert_eq!(column("lastUpdated"), Some(last_updated_ms.to_string()));
            if resource_type == "Observation" {
                let patient = id.split('-').next().expect("patient").to_owned();
                assert_eq!(column("patient"), Some(patient.clone()));
                assert_eq!(column("subject"), Some(format!("Patient/{patient}")));
                assert_eq!(column("status"), Some("final".to_owned()));
                assert_eq!(column("code"), Some("http://loinc.org|8867-4".to_owned()));
            }
            if resource_type == "Patient" {
                assert_eq!(column("patient"), Some(id.clone()));
                assert_eq!(column("subject"), None);
            }
            ids.insert(id);
        }
    }
    assert_eq!(
        ids,
        set(&["g1", "p1", "p2", "p1-o1", "p1-o2", "p2-o1", "p2-o2"])
    );

    // Deletions stay NDJSON Bundles, as the spec has them.
    delete(&client, &server, "Observation/p1-o2").await;
    let since = manifest["transactionTime"].as_str().expect("time");
    let status = kickoff(
        &client,
        &server,
        &format!(
            "/fhir/r4/Group/g1/$export?_outputFormat={PARQUET}&_since={}",
            since.replace('+', "%2B")
        ),
    )
    .await;
    let second = wait_for_manifest(&client, &status).await;
    assert!(second["output"].as_array().expect("output").is_empty());
    let deleted = download_all(&client, &second, "deleted").await;
    assert_eq!(
        deleted[0]["entry"][0]["request"]["url"],
        "Observation/p1-o2"
    );
}

const S3_ACCESS_KEY: &str = "sphere-test";
const S3_SECRET_KEY: &str = "sphere-test-secret";

/// A real S3-protocol server (s3s over the folder `root`, one sub-folder per bucket) on a local
/// port, served by the test's own runtime for as long as the test runs.
async fn s3_server(root: &std::path::Path) -> String {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let fs = s3s_fs::FileSystem::new(root).expect("s3s-fs root");
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(
        S3_ACCESS_KEY,
        S3_SECRET_KEY,
    ));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let connection = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            tokio::spawn(async move {
                let _ = connection.await;
            });
        }
    });
    format!("http://{address}")
}

/// The files under `dir`, as paths relative to it.
fn files_under(dir: &std::path::Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                found.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_s3_storage_files_are_objects_in_the_bucket_downloaded_in_ranges_and_removed_on_cancel(
) {
    let buckets = tempfile::tempdir().expect("bucket root");
    std::fs::create_dir(buckets.path().join("exports")).expect("bucket");
    let endpoint = s3_server(buckets.path()).await;
    let data = tempfile::tempdir().expect("data dir");
    let server = Server::start_in(
        data.path(),
        &[],
        &[
            ("SPHERE_BULK_STORAGE", "s3"),
            ("SPHERE_BULK_S3_BUCKET", "exports"),
            ("SPHERE_BULK_S3_ENDPOINT", &endpoint),
            ("SPHERE_BULK_S3_ALLOW_HTTP", "true"),
            ("SPHERE_BULK_S3_PREFIX", "sphere/bulk"),
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
        ],
    );
    let client = backend_client(&server, SCOPE).await;
    seed(&client, &server).await;
    let status = kickoff(&client, &server, "/fhir/r4/Group/g1/$export").await;
    let manifest = wait_for_manifest(&client, &status).await;
    let resources = download_all(&client, &manifest, "output").await;
    assert_eq!(ids_of(&resources, "Patient"), set(&["p1", "p2"]));
    assert_eq!(ids_of(&resources, "Observation").len(), 4);

    // The files are objects under the prefix, nothing else (no parts left behind).
    let job = status.rsplit('/').next().expect("job id");
    let in_bucket = files_under(&buckets.path().join("exports"));
    let expected: BTreeSet<String> = ["Group", "Observation", "Patient"]
        .iter()
        .map(|t| format!("sphere/bulk/{job}/{t}.ndjson"))
        .collect();
    assert_eq!(in_bucket, expected);

    let url = manifest["output"][0]["url"].as_str().expect("url");
    let whole = client
        .get(url)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let r = client
        .get(url)
        .header("range", "bytes=5-14")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 5-14/{}", whole.len()).as_str()
    );
    assert_eq!(r.bytes().await.expect("bytes"), whole.slice(5..15));

    let r = client.delete(&status).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(files_under(&buckets.path().join("exports")).is_empty());
    assert_eq!(
        client.get(url).send().await.expect("get").status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deleting_a_running_export_cancels_it_and_frees_the_clients_slot() {
    let server = Server::start();
    let client = backend_client(&server, SCOPE).await;
    // Enough resources (one transaction) that an export runs for a while after its kick-off.
    let entries: Vec<Value> = (0..3000)
        .map(|n| {
            let o = observation(&format!("bulk-o{n}"), "p1", n);
            json!({"resource": o, "request": {"method": "PUT", "url": format!("Observation/bulk-o{n}")}})
        })
        .chain([json!({"resource": patient("p1"), "request": {"method": "PUT", "url": "Patient/p1"}})])
        .collect();
    let r = client
        .post(server.url("/fhir/r4"))
        .header("content-type", FHIR_JSON)
        .json(&json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
        .send()
        .await
        .expect("transaction");
    assert_eq!(r.status(), StatusCode::OK);

    // Kick off and poll at once; an export that already finished (a very fast machine) is
    // dropped and another kicked off, until one is caught running.
    let mut caught_running = None;
    for _ in 0..20 {
        let status = kickoff(&client, &server, "/fhir/r4/$export").await;
        let r = client.get(&status).send().await.expect("poll");
        if r.status() == StatusCode::ACCEPTED {
            caught_running = Some(status);
            break;
        }
        assert_eq!(r.status(), StatusCode::OK);
        let r = client.delete(&status).send().await.expect("delete");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let status = caught_running.expect("an export still running right after its kick-off");
    let r = client.delete(&status).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = client.get(&status).send().await.expect("poll");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["resourceType"], "OperationOutcome");
    // A second DELETE finds nothing to cancel.
    let r = client.delete(&status).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The cancelled job no longer counts against the client's running jobs: with the limit
    // (2) reached by two running exports, a third is refused; cancel one and it is accepted.
    let first = kickoff(&client, &server, "/fhir/r4/$export").await;
    let second = kickoff(&client, &server, "/fhir/r4/$export").await;
    let r = kickoff_request(&client, &server, "/fhir/r4/$export")
        .send()
        .await
        .expect("kick-off");
    if r.status() == StatusCode::TOO_MANY_REQUESTS {
        let r = client.delete(&first).send().await.expect("delete");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let third = kickoff(&client, &server, "/fhir/r4/$export").await;
        wait_for_manifest(&client, &third).await;
    }
    let manifest = wait_for_manifest(&client, &second).await;
    let resources = download_all(&client, &manifest, "output").await;
    assert_eq!(ids_of(&resources, "Observation").len(), 3000);
}
