//! Operations: backup while writing, restore, replay to the same state; /metrics.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventFilter, EventLog, ExpectedRevision, NewEvent, RecordedEvent};
use support::{sphere, Server};

async fn all_events(log: &SqliteLog) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = log
            .read_all(after, &EventFilter::all(), 5000)
            .await
            .unwrap();
        let done = page.len() < 5000;
        after = page.last().map(|e| e.position).or(after);
        out.extend(page);
        if done {
            return out;
        }
    }
}

fn run(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    sphere()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_restores_and_replays_to_the_same_state() {
    let root = tempfile::tempdir().unwrap();
    let live = root.path().join("live");
    let backup_dir = root.path().join("backup");
    let restored = root.path().join("restored");
    let log = SqliteLog::open(&live).unwrap();
    std::fs::create_dir_all(live.join("keys")).unwrap();
    std::fs::write(live.join("keys/signing.pem"), b"not really a key").unwrap();
    for i in 0..200 {
        log.append(
            &format!("Patient-{}", i % 20),
            ExpectedRevision::Any,
            vec![NewEvent::new(
                "ResourceUpdated",
                format!(r#"{{"n":{i},"v":1.50}}"#),
            )],
        )
        .await
        .unwrap();
    }
    // Keep writing while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let log = log.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                log.append(
                    "Observation-busy",
                    ExpectedRevision::Any,
                    vec![NewEvent::new("ResourceUpdated", format!(r#"{{"i":{i}}}"#))],
                )
                .await
                .unwrap();
                i += 1;
            }
        })
    };
    let out = tokio::task::spawn_blocking({
        let live = live.clone();
        let backup_dir = backup_dir.clone();
        move || {
            sphere()
                .arg("backup")
                .arg(&backup_dir)
                .arg("--data-dir")
                .arg(&live)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("backup.json")).unwrap()).unwrap();
    let head = manifest["head"].as_u64().unwrap();
    assert!(head >= 200);

    let out = run(&["restore", backup_dir.to_str().unwrap()], &restored);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(restored.join("keys/signing.pem").is_file());

    // The restored log is exactly the live log's prefix up to the backup's head.
    let original = all_events(&log).await;
    let copy_log = SqliteLog::open(&restored).unwrap();
    let copy = all_events(&copy_log).await;
    let prefix: Vec<_> = original
        .into_iter()
        .filter(|e| e.position.0 <= head)
        .collect();
    assert_eq!(copy.len() as u64, manifest["events"].as_u64().unwrap());
    assert_eq!(copy, prefix);
    copy_log.close().await.unwrap();
    log.close().await.unwrap();

    // Replaying it rebuilds the projection to the same state.
    let out = run(&["rebuild", "stats"], &restored);
    assert!(out.status.success());
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(restored.join("projections/stats.json")).unwrap())
            .unwrap();
    assert_eq!(stats["events"].as_u64().unwrap(), prefix.len() as u64);
    assert_eq!(stats["checkpoint"].as_u64().unwrap(), head);
}

#[tokio::test]
async fn restore_refuses_to_replace_a_log_without_force() {
    let root = tempfile::tempdir().unwrap();
    let a = root.path().join("a");
    let log = SqliteLog::open(&a).unwrap();
    log.append(
        "Patient-1",
        ExpectedRevision::Any,
        vec![NewEvent::new("E", "{}")],
    )
    .await
    .unwrap();
    log.close().await.unwrap();
    let backup_dir = root.path().join("b");
    assert!(run(&["backup", backup_dir.to_str().unwrap()], &a)
        .status
        .success());
    let again = run(&["backup", backup_dir.to_str().unwrap()], &a);
    assert!(
        !again.status.success(),
        "backing up into a non-empty folder is refused"
    );
    let out = run(&["restore", backup_dir.to_str().unwrap()], &a);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = run(&["restore", backup_dir.to_str().unwrap(), "--force"], &a);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn metrics_expose_requests_log_and_projections_in_prometheus_format() {
    let server = Server::start();
    let client = server.client();
    for _ in 0..3 {
        client.get(server.url("/health")).send().await.unwrap();
    }
    let response = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    assert!(text
        .contains("sphere_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"}"));
    assert!(text.contains("sphere_http_request_duration_seconds_bucket{route=\"/health\""));
    assert!(text.contains("sphere_eventlog_head_position"));
    assert!(text.contains("sphere_projection_applied_position{projection=\"stats\"}"));
    assert!(text.contains("sphere_projection_live{projection=\"stats\"} 1"));
    // Every sample line is `name{labels} value` or `name value`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line: {line}");
    }
}

#[tokio::test]
async fn the_service_base_url_list_is_public_cacheable_fhir() {
    let server = Server::start();
    let client = server.client();
    let response = client
        .get(server.url("/services-base-url"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/fhir+json");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    let bundle: serde_json::Value = response.json().await.unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    let entries = bundle["entry"].as_array().unwrap();
    let endpoint = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Endpoint")
        .unwrap();
    assert_eq!(
        endpoint["resource"]["address"],
        format!("{}/fhir/r4", server.base)
    );
    assert_eq!(
        endpoint["resource"]["connectionType"]["code"],
        "hl7-fhir-rest"
    );
    assert_eq!(endpoint["resource"]["status"], "active");
    let organization = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Organization")
        .unwrap();
    assert_eq!(
        organization["resource"]["identifier"][0]["system"],
        "http://hl7.org/fhir/sid/us-npi"
    );
    assert_eq!(
        endpoint["resource"]["managingOrganization"]["reference"],
        format!(
            "Organization/{}",
            organization["resource"]["id"].as_str().unwrap()
        )
    );
    // Both resources validate as FHIR R4 with the domain validator.
    for entry in entries {
        let issues = sphere_domain::fhir::validate(&entry["resource"]);
        assert!(!sphere_domain::fhir::has_errors(&issues), "{issues:?}");
    }
    let again = client
        .get(server.url("/services-base-url"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let ndjson = client
        .get(server.url("/services-base-url.ndjson"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ndjson.lines().count(), 2);
}
