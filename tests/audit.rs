//! Access history, black-box: real requests to the real server, then the trail as auditors see
//! it (`sphere audit --format ndjson`, run beside the live server) and as FHIR clients see it
//! (`/fhir/r4/AuditEvent`), and the patient's own page.

mod fhir_common;
mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{sphere, Server};

/// `sphere audit` against the running server's data directory: one JSON object per access.
fn audit(server: &Server, filters: &[&str]) -> Vec<Value> {
    let out = sphere()
        .args(["audit", "--format", "ndjson", "--data-dir"])
        .arg(&server.data_dir)
        .args(filters)
        .output()
        .expect("run sphere audit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

/// `(interaction, client or "-", status)` of each access, in log order.
fn summary(accesses: &[Value], clients: &[(&str, &str)]) -> Vec<(String, String, u64)> {
    accesses
        .iter()
        .map(|a| {
            let client = a["client_id"].as_str().map_or("-".to_owned(), |c| {
                clients
                    .iter()
                    .find(|(id, _)| *id == c)
                    .map_or(c.to_owned(), |(_, name)| (*name).to_owned())
            });
            (
                a["interaction"].as_str().unwrap().to_owned(),
                client,
                a["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn s(i: &str, c: &str, status: u64) -> (String, String, u64) {
    (i.to_owned(), c.to_owned(), status)
}

async fn create(client: &reqwest::Client, server: &Server, resource: Value) -> String {
    let t = resource["resourceType"].as_str().unwrap().to_owned();
    let r = client
        .post(server.url(&format!("/fhir/r4/{t}")))
        .header("content-type", "application/fhir+json")
        .json(&resource)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_trail_holds_exactly_the_accesses_made_including_refusals() {
    let server = Server::start();
    let (admin, admin_id) =
        fhir_common::backend_client_builder(&server, "system/*.cruds", "audit admin").await;
    let admin = admin.build().unwrap();
    let (app_y, app_y_id) =
        fhir_common::backend_client_builder(&server, "system/Observation.rs", "app Y").await;
    let app_y = app_y.build().unwrap();
    let names = [(admin_id.as_str(), "admin"), (app_y_id.as_str(), "Y")];

    let patient = create(
        &admin,
        &server,
        json!({"resourceType": "Patient", "name": [{"family": "Audit"}], "gender": "female"}),
    )
    .await;
    let observation = create(
        &admin,
        &server,
        json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")}}),
    )
    .await;

    // admin reads the patient; app Y searches its observations, then is refused the patient.
    let r = admin
        .get(server.url(&format!("/fhir/r4/Patient/{patient}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app_y
        .get(server.url(&format!("/fhir/r4/Observation?patient={patient}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app_y
        .get(server.url(&format!("/fhir/r4/Patient/{patient}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // No token, and a forged one.
    let r = server
        .client()
        .get(server.url(&format!("/fhir/r4/Patient/{patient}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = server
        .client()
        .get(server.url(&format!("/fhir/r4/Patient/{patient}")))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Who saw patient X.
    let seen = audit(&server, &["--patient", &patient]);
    assert_eq!(
        summary(&seen, &names),
        vec![
            s("create", "admin", 201),
            s("create", "admin", 201),
            s("read", "admin", 200),
            s("search-type", "Y", 200),
            s("read", "Y", 403),
            s("read", "-", 401),
            s("read", "-", 401),
        ]
    );
    assert_eq!(
        seen[1]["ids"],
        json!([format!("Observation/{observation}")])
    );
    let search = &seen[3];
    assert_eq!(search["query"], format!("patient={patient}"));
    assert_eq!(search["ids"], json!([format!("Observation/{observation}")]));
    assert_eq!(search["types"], json!(["Observation"]));
    assert!(search["token_id"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(search["source_ip"], "127.0.0.1");
    assert_eq!(seen[4]["detail"], "forbidden");
    assert_eq!(seen[5]["detail"], "unauthenticated");
    // Never a token: the forged bearer value is nowhere in the trail.
    assert!(!serde_json::to_string(&seen)
        .unwrap()
        .contains("not-a-token"));

    // What did app Y touch: its token, the search, the refused read.
    let touched = audit(&server, &["--client", &app_y_id]);
    assert_eq!(
        summary(&touched, &names),
        vec![
            s("token", "Y", 200),
            s("search-type", "Y", 200),
            s("read", "Y", 403)
        ]
    );
    assert_eq!(touched[0]["operation"], "client_credentials");
    let refused = audit(
        &server,
        &[
            "--client",
            &app_y_id,
            "--interaction",
            "read",
            "--since",
            "2000-01-01",
        ],
    );
    assert_eq!(refused.len(), 1);
    assert!(audit(&server, &["--client", &app_y_id, "--until", "2000-01-01"]).is_empty());

    // The same trail as FHIR AuditEvents.
    let bundle: Value = admin
        .get(server.url(&format!("/fhir/r4/AuditEvent?patient={patient}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["total"], 7, "{bundle}");
    let newest = &bundle["entry"][0]["resource"];
    assert_eq!(newest["resourceType"], "AuditEvent");
    assert_eq!(newest["subtype"][0]["code"], "read");
    assert_eq!(newest["outcome"], "4");
    let refusal: Value = admin
        .get(server.url(&format!(
            "/fhir/r4/AuditEvent?agent={app_y_id}&subtype=read&date=ge2000-01-01"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refusal["total"], 1, "{refusal}");
    let event = &refusal["entry"][0]["resource"];
    assert_eq!(event["outcomeDesc"], "HTTP 403 (forbidden)");
    assert_eq!(event["agent"][0]["who"]["identifier"]["value"], app_y_id);
    let id = event["id"].as_str().unwrap();
    let read: Value = admin
        .get(server.url(&format!("/fhir/r4/AuditEvent/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&read, event);
    let tokens: Value = admin
        .get(server.url("/fhir/r4/AuditEvent?type=110114&subtype=token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["total"], 2, "{tokens}");

    // AuditEvent is read-only, needs a scope that grants it, and refuses unknown parameters.
    let r = admin
        .post(server.url("/fhir/r4/AuditEvent"))
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType":"AuditEvent"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["resourceType"],
        "OperationOutcome"
    );
    let r = app_y
        .get(server.url("/fhir/r4/AuditEvent"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = admin
        .get(server.url("/fhir/r4/AuditEvent?name=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = admin
        .get(server.url("/fhir/r4/AuditEvent?date=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Reading the trail is itself recorded, once per request.
    let reads = audit(
        &server,
        &["--client", &admin_id, "--interaction", "read,search-type"],
    );
    let audit_reads = reads
        .iter()
        .filter(|a| a["types"] == json!(["AuditEvent"]))
        .count();
    assert_eq!(audit_reads, 6);

    // The CapabilityStatement lists AuditEvent as read and search-type only.
    let cs: Value = server
        .client()
        .get(server.url("/fhir/r4/metadata"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = cs["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "AuditEvent")
        .expect("AuditEvent in the CapabilityStatement");
    assert_eq!(
        entry["interaction"],
        json!([{"code": "read"}, {"code": "search-type"}])
    );
}

#[tokio::test]
async fn no_response_is_answered_before_its_access_is_in_the_log() {
    let server = Server::start();
    let client = fhir_common::authorized_client(&server).await;
    let data_dir = server.data_dir.clone();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let client = client.clone();
        let url = server.url(&format!("/fhir/r4/Patient/missing-{i}"));
        let data_dir = data_dir.clone();
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND);
            // The response is here: its access must already be durable, read from another
            // connection to the log file.
            let wanted = format!("Patient/missing-{i}");
            let mut found = 0;
            sphere::audit::replay::replay_sqlite(
                &data_dir,
                &sphere::audit::replay::Filter::default(),
                |_, r, _| {
                    if r.ids.contains(&wanted) {
                        found += 1;
                    }
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(found, 1, "{wanted} answered without its access in the log");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn a_patient_sees_who_accessed_their_record() {
    let server = Server::start();
    let (admin, _) =
        fhir_common::backend_client_builder(&server, "system/*.cruds", "Clinic Portal").await;
    let admin = admin.build().unwrap();
    let patient = create(
        &admin,
        &server,
        json!({"resourceType": "Patient", "name": [{"family": "Page"}]}),
    )
    .await;
    let r = admin
        .get(server.url(&format!("/fhir/r4/Patient/{patient}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let out = sphere()
        .args([
            "users",
            "add",
            "--username",
            "pat",
            "--password",
            "password-123",
            "--patient",
            &patient,
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let browser = server
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session the page asks to sign in.
    let page = browser
        .get(server.url("/auth/access-history"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("action=\"/auth/login\""), "{page}");
    // The CLI's user reaches the server within a second or so.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cookie = loop {
        let r = browser
            .post(server.url("/auth/login"))
            .form(&[
                ("txn", ""),
                ("csrf", ""),
                ("username", "pat"),
                ("password", "password-123"),
            ])
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::SEE_OTHER {
            break r.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
        }
        assert!(Instant::now() < deadline, "the new user cannot sign in");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let r = browser
        .get(server.url("/auth/access-history"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    let page = r.text().await.unwrap();
    assert!(page.contains("<table>"), "{page}");
    assert!(page.contains("Clinic Portal"), "{page}");
    assert!(page.contains("Viewed Patient"), "{page}");
    assert!(page.contains("Changed Patient"), "{page}");
    assert!(!page.contains("<script"), "no JavaScript: {page}");
    // Failed sign-ins are in the trail too (with the username tried, never the password).
    let r = browser
        .post(server.url("/auth/login"))
        .form(&[
            ("txn", ""),
            ("csrf", ""),
            ("username", "pat"),
            ("password", "wrong-password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let logins = audit(&server, &["--interaction", "login", "--user", "pat"]);
    assert_eq!(logins.last().map(|l| l["status"].clone()), Some(json!(401)));
    assert!(!serde_json::to_string(&logins)
        .unwrap()
        .contains("wrong-password"));
    // The page view itself is recorded against the patient.
    let views = audit(
        &server,
        &["--patient", &patient, "--interaction", "access-history"],
    );
    assert_eq!(views.len(), 1);
}

#[tokio::test]
async fn audit_writes_parquet_and_refuses_bad_filters() {
    let server = Server::start();
    let client = fhir_common::authorized_client(&server).await;
    for i in 0..3 {
        client
            .get(server.url(&format!("/fhir/r4/Patient/p{i}")))
            .send()
            .await
            .unwrap();
    }
    let file = server.data_dir.join("trail.parquet");
    let out = sphere()
        .args([
            "audit",
            "--interaction",
            "read",
            "--format",
            "parquet",
            "--out",
        ])
        .arg(&file)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);
    // Table output for a terminal.
    let out = sphere()
        .args(["audit", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("recorded"), "{table}");
    assert!(table.contains("Patient/p2"), "{table}");
    // Bad input: a clear message, a failing exit.
    for args in [
        vec!["--since", "last tuesday"],
        vec!["--since", "2026-02-01", "--until", "2026-01-01"],
        vec!["--format", "parquet"],
    ] {
        let out = sphere()
            .arg("audit")
            .args(&args)
            .arg("--data-dir")
            .arg(&server.data_dir)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--since") || err.contains("--out"), "{err}");
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{url}");
    r.json().await.unwrap()
}

/// The `AuditEvent` ids of every page of a search, following `next` links from `url`.
async fn all_pages(client: &reqwest::Client, url: String) -> (Vec<Vec<String>>, Vec<u64>) {
    let mut pages = Vec::new();
    let mut totals = Vec::new();
    let mut next = Some(url);
    while let Some(url) = next.take() {
        let bundle = get_json(client, &url).await;
        totals.push(bundle["total"].as_u64().unwrap());
        pages.push(
            bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect(),
        );
        next = bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
    }
    (pages, totals)
}

#[tokio::test]
async fn audit_events_page_with_a_stable_cursor_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[], &[]);
    let (admin, _) =
        fhir_common::backend_client_builder(&server, "system/*.cruds", "audit pager").await;
    let admin = admin.build().unwrap();
    let patient = create(
        &admin,
        &server,
        json!({"resourceType": "Patient", "name": [{"family": "Pager"}]}),
    )
    .await;
    let read_url = server.url(&format!("/fhir/r4/Patient/{patient}"));
    for _ in 0..5 {
        get_json(&admin, &read_url).await;
    }
    // create + 5 reads = 6 accesses to the patient, in pages of 4.
    let search = server.url(&format!("/fhir/r4/AuditEvent?patient={patient}&_count=4"));
    let first = get_json(&admin, &search).await;
    assert_eq!(first["total"], 6, "{first}");
    assert_eq!(first["entry"].as_array().unwrap().len(), 4);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .expect("a next link")["url"]
        .as_str()
        .unwrap()
        .to_owned();
    // A newer access to the patient arrives before the next page is fetched: the cursor
    // still yields the two oldest, not a shifted window.
    get_json(&admin, &read_url).await;
    let second = get_json(&admin, &next).await;
    let second_ids: Vec<&str> = second["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(second_ids.len(), 2, "{second}");
    assert!(
        !second["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next"),
        "the last page has no next link: {second}"
    );
    let (pages, _) = all_pages(&admin, search.clone()).await;
    let before: Vec<String> = pages.concat();
    assert_eq!(before.len(), 7);
    assert_eq!(
        &before[5..],
        second_ids.as_slice(),
        "the oldest two, in order"
    );
    let bad = admin
        .get(server.url("/fhir/r4/AuditEvent?_cursor=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // After a restart the history is still served, from the view's stored checkpoint.
    assert!(server.terminate().success());
    let server = Server::start_in(dir.path(), &[], &[]);
    let health = get_json(&server.client(), &server.url("/health/ready")).await;
    let audit_view = health["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "audit")
        .expect("the audit view is listed")
        .clone();
    assert!(
        audit_view["resumed_from"].as_u64().is_some(),
        "the audit view resumed from its checkpoint: {health}"
    );
    let (admin, _) =
        fhir_common::backend_client_builder(&server, "system/*.cruds", "audit pager 2").await;
    let admin = admin.build().unwrap();
    let search = server.url(&format!("/fhir/r4/AuditEvent?patient={patient}&_count=4"));
    let (pages, totals) = all_pages(&admin, search).await;
    assert_eq!(
        pages.concat(),
        before,
        "the same history, in the same order"
    );
    assert!(totals.iter().all(|&t| t == 7), "{totals:?}");
    let one = get_json(
        &admin,
        &server.url(&format!("/fhir/r4/AuditEvent/{}", before[6])),
    )
    .await;
    assert_eq!(one["id"], before[6].as_str());
    assert!(server.terminate().success());
}
