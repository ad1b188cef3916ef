//! Bearer tokens on the FHIR API: 401 without or with a bad token, scopes deciding type,
//! patient compartment and granular categories, and revocation taking effect before the
//! revoke call returns (while other requests hammer the API).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{sphere, Server};

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory";

fn backend_keys() -> (EncodingKey, Value) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let key = EncodingKey::from_ec_der(&pair.serialize_der());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES384).unwrap();
    jwk.common.key_id = Some("backend-1".into());
    (key, json!({"keys": [jwk]}))
}

async fn backend_token(server: &Server, key: &EncodingKey, client_id: &str, scope: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some("backend-1".into());
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": server.url("/auth/token"), "exp": now + 120, "jti": uuid::Uuid::new_v4().to_string()}),
        key,
    )
    .unwrap();
    let r = server
        .client()
        .post(server.url("/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &assertion),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn put(server: &Server, token: &str, resource: Value) {
    let path = format!(
        "/fhir/r4/{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    );
    let r = server
        .client()
        .put(server.url(&path))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(resource.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{path}: {} {:?}",
        r.status(),
        r.text().await
    );
}

fn observation(id: &str, patient: &str, category: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

/// The backend client `seed` registers (allowed `system/*.cruds`): mints narrower tokens.
struct Backend {
    key: EncodingKey,
    client_id: String,
}

impl Backend {
    async fn token(&self, server: &Server, scope: &str) -> String {
        backend_token(server, &self.key, &self.client_id, scope).await
    }
}

/// Seeds two patients and their data with a backend token; returns the backend client.
async fn seed(server: &Server) -> Backend {
    let (key, jwks) = backend_keys();
    let r = server.client().post(server.url("/auth/register")).json(&json!({
        "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks, "scope": "system/*.cruds",
    })).send().await.unwrap();
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = backend_token(server, &key, &client_id, "system/*.cruds").await;
    for p in ["p1", "p2"] {
        put(server, &token, json!({"resourceType": "Patient", "id": p, "gender": "female", "name": [{"family": "Doe", "given": ["Jo"]}]})).await;
    }
    put(server, &token, observation("lab1", "p1", "laboratory")).await;
    put(server, &token, observation("vital1", "p1", "vital-signs")).await;
    put(server, &token, observation("lab2", "p2", "laboratory")).await;
    put(
        server,
        &token,
        json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
        "code": {"text": "Asthma"}}),
    )
    .await;
    Backend { key, client_id }
}

/// A patient-app token for `p1` with `scope` through the real login and consent forms.
async fn patient_token(server: &Server, scope: &str) -> String {
    let redirect_uri = "https://app.example/cb";
    let r = server
        .client()
        .post(server.url("/auth/register"))
        .json(&json!({
            "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none",
            "scope": "launch/patient openid fhirUser offline_access patient/*.rs",
        }))
        .send()
        .await
        .unwrap();
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let username = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let out = sphere()
        .args([
            "users",
            "add",
            "--username",
            &username,
            "--password",
            "password-123",
            "--patient",
            "p1",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let browser = server
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let aud = server.url("/fhir/r4");
    let hidden = |html: &str, name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap() + marker.len();
        html[start..].split('"').next().unwrap().to_owned()
    };
    // The CLI's user reaches the server's view within a second or so.
    let mut cookie = None;
    let mut txn = String::new();
    let mut csrf = String::new();
    for _ in 0..100 {
        let page = browser
            .get(server.url("/auth/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", &client_id),
                ("redirect_uri", redirect_uri),
                ("scope", scope),
                ("state", "s"),
                ("aud", &aud),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        txn = hidden(&page, "txn");
        csrf = hidden(&page, "csrf");
        let r = browser
            .post(server.url("/auth/login"))
            .form(&[
                ("txn", txn.as_str()),
                ("csrf", csrf.as_str()),
                ("username", username.as_str()),
                ("password", "password-123"),
            ])
            .send()
            .await
            .unwrap();
        if r.status() == 303 {
            cookie = Some(
                r.headers()["set-cookie"]
                    .to_str()
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let cookie = cookie.expect("user usable");
    let mut form = vec![
        ("txn".to_owned(), txn),
        ("csrf".to_owned(), csrf),
        ("decision".to_owned(), "allow".to_owned()),
    ];
    form.extend(scope.split(' ').map(|s| ("scope".to_owned(), s.to_owned())));
    let r = browser
        .post(server.url("/auth/consent"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let code: String = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let body: Value = server
        .client()
        .post(server.url("/auth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["patient"], "p1");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn get(server: &Server, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = server.client().get(server.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn fhir_reads_need_a_valid_token_and_stay_within_its_scopes() {
    let server = Server::start();
    seed(&server).await;
    let r = get(&server, "/fhir/r4/Patient/p1", None).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(
        r.json::<Value>().await.unwrap()["resourceType"],
        "OperationOutcome"
    );
    let r = get(&server, "/fhir/r4/Patient/p1", Some("not-a-token")).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    assert_eq!(get(&server, "/fhir/r4/metadata", None).await.status(), 200);

    let scope = format!(
        "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs?category={LAB}"
    );
    let token = patient_token(&server, &scope).await;
    assert_eq!(
        get(&server, "/fhir/r4/Patient/p1", Some(&token))
            .await
            .status(),
        200
    );
    assert_eq!(
        get(&server, "/fhir/r4/Patient/p2", Some(&token))
            .await
            .status(),
        403,
        "another patient"
    );
    assert_eq!(
        get(&server, "/fhir/r4/Observation/lab1", Some(&token))
            .await
            .status(),
        200
    );
    let r = get(&server, "/fhir/r4/Observation/vital1", Some(&token)).await;
    assert_eq!(r.status(), 403, "a category not granted");
    assert_eq!(
        r.json::<Value>().await.unwrap()["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(
        get(&server, "/fhir/r4/Observation/lab2", Some(&token))
            .await
            .status(),
        403,
        "another patient's lab"
    );
    // A search returns exactly the granted categories of the patient in context.
    let r = get(&server, "/fhir/r4/Observation?patient=p1", Some(&token)).await;
    assert_eq!(r.status(), 200);
    let bundle: Value = r.json().await.unwrap();
    let ids: Vec<&str> = bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|e| e["resource"]["id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, vec!["lab1"], "{bundle}");
    // Counts stay within the patient in context and the granted category: neither p2's lab
    // nor p1's vital signs are counted, and another patient's compartment is refused.
    let r = get(&server, "/fhir/r4/Observation?_summary=count", Some(&token)).await;
    let count: Value = r.json().await.unwrap();
    assert_eq!(count["total"], 1, "p1's lab only: {count}");
    let r = get(&server, "/fhir/r4/Patient/p2/Observation", Some(&token)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        get(&server, "/fhir/r4/Condition/c1", Some(&token))
            .await
            .status(),
        403,
        "a type not granted"
    );
    let r = server
        .client()
        .put(server.url("/fhir/r4/Patient/p1"))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "p1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "read-only scopes cannot write");
}

#[tokio::test]
async fn no_request_succeeds_after_the_revoke_call_returns() {
    let server = Arc::new(Server::start());
    seed(&server).await;
    let token = patient_token(&server, "launch/patient patient/Patient.rs").await;
    let revoked = Arc::new(AtomicBool::new(false));
    let late_successes = Arc::new(AtomicUsize::new(0));
    let before = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (server, token, revoked, late, before) = (
            server.clone(),
            token.clone(),
            revoked.clone(),
            late_successes.clone(),
            before.clone(),
        );
        workers.push(tokio::spawn(async move {
            let client = server.client();
            for _ in 0..400 {
                // Read the flag before sending: a request sent after the revoke returned must fail.
                let after_revoke = revoked.load(Ordering::SeqCst);
                let status = client
                    .get(server.url("/fhir/r4/Patient/p1"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status == 200 {
                    if after_revoke {
                        late.fetch_add(1, Ordering::SeqCst);
                    } else {
                        before.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if after_revoke && status == 401 {
                    break;
                }
            }
        }));
    }
    while before.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The patient app is public: it identifies itself with client_id.
    let jwt_claims: Value = {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    let client_id = jwt_claims["client_id"].as_str().unwrap().to_owned();
    let r = server
        .client()
        .post(server.url("/auth/revoke"))
        .form(&[("token", token.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    revoked.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(late_successes.load(Ordering::SeqCst), 0);
    assert_eq!(
        get(&server, "/fhir/r4/Patient/p1", Some(&token))
            .await
            .status(),
        401
    );
}

/// `Type/id` of a searchset's entries, in order.
fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|e| e["search"]["mode"] != "outcome")
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap_or_default(),
                        e["resource"]["id"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The path and query of a Bundle's `next` link, if it has one.
fn next_link(bundle: &Value) -> Option<String> {
    let link = bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?;
    let url = url::Url::parse(link["url"].as_str()?).ok()?;
    Some(format!(
        "{}?{}",
        url.path(),
        url.query().unwrap_or_default()
    ))
}

async fn search(server: &Server, path: &str, token: &str) -> Value {
    let r = get(server, path, Some(token)).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_granular_grant_counts_and_pages_only_the_categories_it_may_see() {
    let server = Server::start();
    let backend = seed(&server).await;
    let token = backend
        .token(&server, &format!("system/Observation.rs?category={LAB}"))
        .await;
    // Two labs (p1's and p2's) are visible; p1's vital signs are not, not even as a number.
    for path in [
        "/fhir/r4/Observation?_summary=count",
        "/fhir/r4/Observation?code=http://loinc.org|718-7&_summary=count",
        "/fhir/r4?_type=Observation&_summary=count",
    ] {
        let count = search(&server, path, &token).await;
        assert_eq!(count["total"], 2, "{path}: {count}");
    }
    let bundle = search(&server, "/fhir/r4/Observation?patient=p1", &token).await;
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(entry_ids(&bundle), ["Observation/lab1"]);
    // Pages hold only visible resources, and the last visible one has no `next`.
    let first = search(&server, "/fhir/r4/Observation?_count=1", &token).await;
    assert_eq!(first["total"], 2, "{first}");
    assert_eq!(entry_ids(&first), ["Observation/lab1"]);
    let next = next_link(&first).expect("a second page");
    let second = search(&server, &next, &token).await;
    assert_eq!(entry_ids(&second), ["Observation/lab2"]);
    assert_eq!(
        next_link(&second),
        None,
        "nothing visible after lab2: {second}"
    );
}

#[tokio::test]
async fn chains_and_reverse_chains_need_search_access_to_every_type_they_cross() {
    let server = Server::start();
    let backend = seed(&server).await;
    let forbidden = |r: reqwest::Response| async move {
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["resourceType"], "OperationOutcome");
        assert_eq!(body["issue"][0]["code"], "forbidden");
    };
    // Patients only: which of them have laboratory Observations is not theirs to learn.
    let patients = backend.token(&server, "system/Patient.rs").await;
    for path in [
        "/fhir/r4/Patient?_has:Observation:subject:category=laboratory",
        "/fhir/r4/Patient?_has:Observation:subject:_has:Observation:has-member:code=718-7",
        "/fhir/r4?_type=Patient&_has:Observation:subject:category=laboratory",
    ] {
        forbidden(get(&server, path, Some(&patients)).await).await;
    }
    // Observations only: chaining into Patient (or beyond it) reads Patient data.
    let observations = backend.token(&server, "system/Observation.rs").await;
    for path in [
        "/fhir/r4/Observation?subject:Patient.name=Doe",
        "/fhir/r4/Observation?patient.gender=female&_summary=count",
        "/fhir/r4/Observation?subject:Patient.general-practitioner:Practitioner.name=x",
    ] {
        forbidden(get(&server, path, Some(&observations)).await).await;
    }
    let both = backend
        .token(&server, "system/Observation.rs system/Patient.rs")
        .await;
    forbidden(
        get(
            &server,
            "/fhir/r4/Observation?subject:Patient.general-practitioner:Practitioner.name=x",
            Some(&both),
        )
        .await,
    )
    .await;
    // With both types granted the same searches answer.
    let bundle = search(
        &server,
        "/fhir/r4/Patient?_has:Observation:subject:category=vital-signs",
        &both,
    )
    .await;
    assert_eq!(entry_ids(&bundle), ["Patient/p1"]);
    for path in [
        "/fhir/r4/Observation?subject:Patient.name=Doe",
        // Unqualified: only the target types the token may search (Patient, not Location).
        "/fhir/r4/Observation?subject.name=Doe",
    ] {
        let bundle = search(&server, path, &both).await;
        assert_eq!(bundle["total"], 3, "{path}: {bundle}");
    }
    // `_include` of a type the token may not read was already dropped from the Bundle.
    let bundle = search(
        &server,
        "/fhir/r4/Observation?_id=lab1&_include=Observation:subject",
        &observations,
    )
    .await;
    assert_eq!(entry_ids(&bundle), ["Observation/lab1"]);
}

#[tokio::test]
async fn a_reverse_chain_sees_only_what_the_grant_may_see_of_its_type() {
    let server = Server::start();
    let backend = seed(&server).await;
    // Patients and laboratory Observations: p1's vital signs must not make p1 match.
    let token = backend
        .token(
            &server,
            &format!("system/Patient.rs system/Observation.rs?category={LAB}"),
        )
        .await;
    let bundle = search(
        &server,
        "/fhir/r4/Patient?_has:Observation:subject:category=vital-signs",
        &token,
    )
    .await;
    assert_eq!(bundle["total"], 0, "{bundle}");
    let bundle = search(
        &server,
        "/fhir/r4/Patient?_has:Observation:subject:category=laboratory",
        &token,
    )
    .await;
    assert_eq!(entry_ids(&bundle), ["Patient/p1", "Patient/p2"]);
}

#[tokio::test]
async fn a_patient_grants_system_search_stays_in_its_patients_compartment() {
    let server = Server::start();
    seed(&server).await;
    let token = patient_token(
        &server,
        "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs",
    )
    .await;
    for path in [
        "/fhir/r4?_type=Observation&_summary=count",
        "/fhir/r4?_type=Observation,Patient&_id=lab1,vital1,lab2,p2&_summary=count",
    ] {
        let count = search(&server, path, &token).await;
        assert_eq!(count["total"], 2, "p1's Observations only: {path}: {count}");
    }
    let bundle = search(&server, "/fhir/r4?_type=Patient,Observation", &token).await;
    assert_eq!(bundle["total"], 3, "{bundle}");
    assert_eq!(
        entry_ids(&bundle),
        ["Observation/lab1", "Observation/vital1", "Patient/p1"]
    );
    // Without `_type`: every type the grant may search (Condition is not one), each within p1.
    let count = search(&server, "/fhir/r4?_summary=count", &token).await;
    assert_eq!(count["total"], 3, "{count}");
    // Paging stays within the compartment too.
    let first = search(
        &server,
        "/fhir/r4?_type=Patient,Observation&_count=2",
        &token,
    )
    .await;
    let next = next_link(&first).expect("a second page");
    let second = search(&server, &next, &token).await;
    assert_eq!(entry_ids(&second), ["Patient/p1"]);
    assert_eq!(next_link(&second), None, "{second}");
    let r = server
        .client()
        .post(server.url("/fhir/r4/_search"))
        .bearer_auth(&token)
        .form(&[("_type", "Observation"), ("_summary", "count")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let count: Value = r.json().await.unwrap();
    assert_eq!(count["total"], 2, "{count}");
    // A type the grant does not reach is refused, as in type search.
    let r = get(
        &server,
        "/fhir/r4?_type=Observation,Condition",
        Some(&token),
    )
    .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn everything_counts_and_returns_only_what_the_grant_may_see() {
    let server = Server::start();
    seed(&server).await;
    let token = patient_token(
        &server,
        &format!("launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs?category={LAB}"),
    )
    .await;
    // p1's compartment holds p1, lab1, vital1 and c1; the grant sees p1 and lab1.
    let bundle = search(&server, "/fhir/r4/Patient/p1/$everything", &token).await;
    assert_eq!(bundle["total"], 2, "{bundle}");
    assert_eq!(entry_ids(&bundle), ["Observation/lab1", "Patient/p1"]);
    let first = search(&server, "/fhir/r4/Patient/p1/$everything?_count=1", &token).await;
    let next = next_link(&first).expect("a second page");
    let second = search(&server, &next, &token).await;
    assert_eq!(entry_ids(&second), ["Patient/p1"]);
    assert_eq!(next_link(&second), None, "{second}");
    // Another patient's record is refused, as their compartment search is.
    let r = get(&server, "/fhir/r4/Patient/p2/$everything", Some(&token)).await;
    assert_eq!(r.status(), 403);
}

async fn post_observation(
    server: &Server,
    token: &str,
    body: Value,
    if_none_exist: &str,
) -> reqwest::Response {
    server
        .client()
        .post(server.url("/fhir/r4/Observation"))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", if_none_exist)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn conditional_writes_match_only_what_the_grant_may_see() {
    let server = Server::start();
    let backend = seed(&server).await;
    let token = backend
        .token(&server, &format!("system/Observation.cruds?category={LAB}"))
        .await;
    let mut lab = observation("ignored", "p1", "laboratory");
    lab.as_object_mut().unwrap().remove("id");
    // vital1 is not the grant's to see: If-None-Exist does not match it (nor hand it back).
    let r = post_observation(&server, &token, lab.clone(), "_id=vital1").await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let r = post_observation(&server, &token, lab.clone(), "_id=lab2").await;
    assert_eq!(r.status(), 200, "a visible match is answered with it");
    assert_eq!(r.json::<Value>().await.unwrap()["id"], "lab2");
    // Nor is it the one a conditional update or delete changes.
    let r = server
        .client()
        .put(server.url("/fhir/r4/Observation?_id=vital1"))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(lab.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "no visible match: a new resource");
    let r = server
        .client()
        .delete(server.url("/fhir/r4/Observation?_id=vital1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "no visible match: nothing deleted");
    let all = backend.token(&server, "system/Observation.rs").await;
    let vital1: Value = get(&server, "/fhir/r4/Observation/vital1", Some(&all))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(vital1["meta"]["versionId"], "1", "{vital1}");
}

#[tokio::test]
async fn an_update_cannot_overwrite_a_resource_outside_the_grant() {
    let server = Server::start();
    let backend = seed(&server).await;
    let token = backend
        .token(&server, &format!("system/Observation.cruds?category={LAB}"))
        .await;
    let put = |id: &str| {
        server
            .client()
            .put(server.url(&format!("/fhir/r4/Observation/{id}")))
            .bearer_auth(&token)
            .header("content-type", "application/fhir+json")
            .body(observation(id, "p1", "laboratory").to_string())
            .send()
    };
    // vital1 becoming a lab result would pass the check of the new content alone.
    let r = put("vital1").await.unwrap();
    assert_eq!(r.status(), 403, "{:?}", r.text().await);
    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": observation("vital1", "p1", "laboratory"),
        "request": {"method": "PUT", "url": "Observation/vital1"}}]});
    let r = server
        .client()
        .post(server.url("/fhir/r4"))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(transaction.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "{:?}", r.text().await);
    let all = backend.token(&server, "system/Observation.rs").await;
    let vital1: Value = get(&server, "/fhir/r4/Observation/vital1", Some(&all))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(vital1["meta"]["versionId"], "1", "{vital1}");
    // Within the grant, updates and new ids go through.
    assert_eq!(put("lab1").await.unwrap().status(), 200);
    assert_eq!(put("lab3").await.unwrap().status(), 201);
}

/// The index puts a Patient in the compartment of every patient its `link` names, but a
/// patient-only grant sees only its own Patient: another record linking to it must not be
/// counted, nor answer a search about its content.
#[tokio::test]
async fn a_patient_grant_does_not_count_another_patient_that_links_to_its_own() {
    let server = Server::start();
    let backend = seed(&server).await;
    let all = backend.token(&server, "system/Patient.cruds").await;
    put(
        &server,
        &all,
        json!({"resourceType": "Patient", "id": "p2", "gender": "male",
            "name": [{"family": "Roe"}],
            "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}]}),
    )
    .await;
    let token = patient_token(
        &server,
        "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs",
    )
    .await;
    for (path, total) in [
        ("/fhir/r4/Patient?_summary=count", 1),
        ("/fhir/r4/Patient?_id=p2&_summary=count", 0),
        ("/fhir/r4/Patient?gender=male&_summary=count", 0),
        ("/fhir/r4?_type=Patient&_summary=count", 1),
    ] {
        let count = search(&server, path, &token).await;
        assert_eq!(count["total"], total, "{path}: {count}");
    }
    let bundle = search(&server, "/fhir/r4/Patient", &token).await;
    assert_eq!(bundle["total"], 1, "{bundle}");
    assert_eq!(entry_ids(&bundle), ["Patient/p1"]);
}

/// `Type/id/versionId` of a history Bundle's entries, in order.
fn history_versions(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| {
                    let r = &e["resource"];
                    format!(
                        "{}/{}/{}",
                        r["resourceType"].as_str().unwrap_or_default(),
                        r["id"].as_str().unwrap_or_default(),
                        r["meta"]["versionId"].as_str().unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn history_pages_hold_only_versions_the_grant_may_see_and_end_with_the_last_of_them() {
    let server = Server::start();
    let backend = seed(&server).await;
    let writer = backend.token(&server, "system/*.cruds").await;
    // lab1: version 1 laboratory, 2 vital signs, 3 laboratory; vital1: two vital-sign versions.
    put(&server, &writer, observation("lab1", "p1", "vital-signs")).await;
    put(&server, &writer, observation("lab1", "p1", "laboratory")).await;
    let mut amended = observation("vital1", "p1", "vital-signs");
    amended["status"] = json!("amended");
    put(&server, &writer, amended).await;
    let token = backend
        .token(&server, &format!("system/Observation.rs?category={LAB}"))
        .await;

    // Instance history skips the hidden version 2 instead of showing an empty page.
    let first = search(
        &server,
        "/fhir/r4/Observation/lab1/_history?_count=1",
        &token,
    )
    .await;
    assert_eq!(history_versions(&first), ["Observation/lab1/3"]);
    let second = search(&server, &next_link(&first).expect("a second page"), &token).await;
    assert_eq!(
        history_versions(&second),
        ["Observation/lab1/1"],
        "{second}"
    );
    assert_eq!(next_link(&second), None, "nothing visible after version 1");

    // A resource none of whose versions the grant may see: no page tells that more exist.
    let hidden = search(
        &server,
        "/fhir/r4/Observation/vital1/_history?_count=1",
        &token,
    )
    .await;
    assert!(history_versions(&hidden).is_empty(), "{hidden}");
    assert_eq!(next_link(&hidden), None, "{hidden}");

    // Type history pages through the visible versions only, newest first.
    let first = search(&server, "/fhir/r4/Observation/_history?_count=2", &token).await;
    assert_eq!(
        history_versions(&first),
        ["Observation/lab1/3", "Observation/lab2/1"]
    );
    let second = search(&server, &next_link(&first).expect("a second page"), &token).await;
    assert_eq!(
        history_versions(&second),
        ["Observation/lab1/1"],
        "{second}"
    );
    assert_eq!(next_link(&second), None, "nothing visible after lab1/1");

    // The writer, who sees everything, still gets every version.
    let all = search(&server, "/fhir/r4/Observation/_history?_count=100", &writer).await;
    assert_eq!(history_versions(&all).len(), 6, "{all}");
}
