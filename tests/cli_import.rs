//! `sphere import` and `sphere serve --demo`, black-box: the real binary on a real data
//! directory, then the real server answering FHIR searches over the imported data.

mod fhir_common;
mod support;

use std::path::Path;
use std::process::Output;

use fhir_common::authorized_client;
use serde_json::{json, Value};
use support::{sphere, Server};

fn import(data: &Path, args: &[&str]) -> Output {
    sphere()
        .arg("--data-dir")
        .arg(data)
        .arg("import")
        .args(args)
        .env("SPHERE_LOG_LEVEL", "warn")
        .output()
        .expect("sphere import runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The numbers of the summary line `imported ...: N created, N updated, N unchanged, N rejected`.
fn counts(out: &Output) -> (u64, u64, u64, u64) {
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("imported "))
        .unwrap_or_else(|| panic!("no summary in {stdout:?} / {}", text(&out.stderr)));
    let n = |word: &str| -> u64 {
        let before = line.split(&format!(" {word}")).next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (n("created"), n("updated"), n("unchanged"), n("rejected"))
}

async fn search_total(server: &Server, client: &reqwest::Client, query: &str) -> u64 {
    let bundle: Value = client
        .get(server.url(&format!("/fhir/r4/{query}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bundle["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("{bundle}"))
}

#[tokio::test]
async fn generated_bundles_import_once_and_the_second_import_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (generated, data) = (root.path().join("gen"), root.path().join("data"));
    let out = sphere()
        .args(["generate", "--patients", "3", "--seed", "11", "--out"])
        .arg(&generated)
        .output()
        .unwrap();
    assert!(out.status.success());

    let first = import(&data, &[generated.to_str().unwrap()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let (created, updated, unchanged, rejected) = counts(&first);
    assert!(created > 300, "a patient record has hundreds of resources");
    assert_eq!((updated, unchanged, rejected), (0, 0, 0));
    assert!(
        text(&first.stdout).contains("projections caught up"),
        "the import waits for the search index: {}",
        text(&first.stdout)
    );

    let second = import(&data, &[generated.to_str().unwrap()]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(counts(&second), (0, 0, created, 0));

    // The server finds what was imported, through the search index.
    let server = Server::start_in(&data, &[], &[]);
    let client = authorized_client(&server).await;
    assert_eq!(search_total(&server, &client, "Patient").await, 3);
    let patient = sphere_domain::synthetic::patient_id(
        &sphere_domain::synthetic::GenerateConfig {
            patients: 3,
            seed: 11,
            ..Default::default()
        },
        0,
    );
    assert!(
        search_total(
            &server,
            &client,
            &format!("Observation?patient={patient}&category=laboratory")
        )
        .await
            > 0
    );
    // Every resource is at version 1: the second import wrote no version.
    let read: Value = client
        .get(server.url(&format!("/fhir/r4/Patient/{patient}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["meta"]["versionId"], "1");
    server.terminate();
}

#[tokio::test]
async fn bad_lines_are_reported_with_file_line_and_path_and_the_rest_is_imported() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let file = root.path().join("patients.ndjson");
    let lines = [
        json!({"resourceType": "Patient", "id": "good-1", "gender": "female"}).to_string(),
        "{\"resourceType\": \"Patient\", \"id\": ".to_owned(),
        json!({"resourceType": "Patient", "id": "bad-gender", "gender": "banana"}).to_string(),
        json!({"resourceType": "Spaceship", "id": "x"}).to_string(),
        json!({"resourceType": "Patient", "id": "good-2"}).to_string(),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();

    let out = import(&data, &[file.to_str().unwrap()]);
    assert!(!out.status.success(), "rejected resources fail the command");
    let stderr = text(&out.stderr);
    let name = file.display().to_string();
    assert!(
        stderr.contains(&format!("{name}:2: not valid JSON")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:3: Patient.gender")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:4:")) && stderr.contains("Spaceship"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("\"resourceType\""),
        "lines are not echoed: {stderr}"
    );
    assert_eq!(counts(&out), (2, 0, 0, 3));

    // Fixed, the file imports the rest without touching what is already there.
    let fixed = root.path().join("fixed.ndjson");
    std::fs::write(&fixed, format!("{}\n{}\n", lines[0], lines[4])).unwrap();
    let again = import(&data, &[fixed.to_str().unwrap()]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(counts(&again), (0, 0, 2, 0));
}

#[tokio::test]
async fn strict_stops_at_the_first_rejected_resource() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let file = root.path().join("bad.ndjson");
    std::fs::write(&file, "not json\n").unwrap();
    let out = import(&data, &["--strict", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--strict"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_transaction_is_all_or_nothing_and_posts_take_the_api_transaction_path() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let put = |id: &str, gender: &str| {
        json!({"resource": {"resourceType": "Patient", "id": id, "gender": gender},
               "request": {"method": "PUT", "url": format!("Patient/{id}")}})
    };
    let broken = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [put("t-1", "male"), put("t-2", "banana")]});
    let file = root.path().join("broken.json");
    std::fs::write(&file, broken.to_string()).unwrap();
    let out = import(&data, &[file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("Bundle.entry[1].resource.gender"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(counts(&out), (0, 0, 0, 2), "no entry of it is written");

    let posts = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b6a3c5e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "gender": "other"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "note"},
                      "subject": {"reference": "urn:uuid:0b6a3c5e-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let file = root.path().join("posts.json");
    std::fs::write(&file, posts.to_string()).unwrap();
    let out = import(&data, &[file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(counts(&out), (2, 0, 0, 0));

    let server = Server::start_in(&data, &[], &[]);
    let client = authorized_client(&server).await;
    let found: Value = client
        .get(server.url("/fhir/r4/Observation?_include=Observation:subject"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["Observation", "Patient"],
        "the urn:uuid reference was rewritten"
    );
    server.terminate();
}

#[tokio::test]
async fn serve_demo_loads_a_population_apps_and_users_once_and_prints_how_to_use_them() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start_in(&data, &["--demo"], &[]);
    let printed = server.printed_through("Try it:");
    for expected in [
        "Demo data:",
        "demo.patient / demo-password-1",
        "confidential app",
        "secret ",
        "backend service",
        "/auth/authorize?response_type=code",
        "curl",
    ] {
        assert!(
            printed.contains(expected),
            "{expected:?} missing from {printed}"
        );
    }
    let client = authorized_client(&server).await;
    assert_eq!(search_total(&server, &client, "Patient").await, 50);

    // The demo user signs in on the real login page and is linked to the demo Patient.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(data.join("demo/credentials.json")).unwrap())
            .unwrap();
    let patient_id = saved["patient_id"].as_str().unwrap().to_owned();
    assert!(printed.contains(&format!("Patient/{patient_id}")));
    let secret = saved["confidential_client_secret"].as_str().unwrap();
    for file in ["events.sqlite3", "events.sqlite3-wal"] {
        let bytes = std::fs::read(data.join(file)).unwrap_or_default();
        assert!(
            !text(&bytes).contains(secret),
            "the event log holds no client secret"
        );
    }
    let head = log_head(&data);
    server.terminate();

    // A restart with --demo prints the same credentials and loads nothing again.
    let server = Server::start_in(&data, &["--demo"], &[]);
    let again = server.printed_through("Try it:");
    assert!(again.contains(secret), "{again}");
    server.terminate();
    assert_eq!(log_head(&data), head);
}

/// The log's head position, as `sphere log stats` prints it.
fn log_head(data: &Path) -> String {
    let out = sphere()
        .arg("--data-dir")
        .arg(data)
        .args(["log", "stats"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find(|l| l.contains("head"))
        .unwrap_or_else(|| panic!("no head in {stdout}"))
        .to_owned()
}
