//! The server as its operators meet it: started from the binary, spoken to over real TLS.

mod support;

use std::time::{Duration, Instant};

use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventLog, ExpectedRevision, NewEvent};
use support::{sphere, Server};

#[tokio::test]
async fn health_answers_over_tls_1_2_and_tls_1_3() {
    let server = Server::start();
    for version in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ] {
        let client = server
            .client_builder()
            .tls_version_min(version)
            .tls_version_max(version)
            .build()
            .unwrap();
        let response = client.get(server.url("/health")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{version:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/health+json"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], "pass");
    }
}

#[test]
fn tls_1_0_and_1_1_are_refused() {
    let server = Server::start();
    let connect = format!("127.0.0.1:{}", server.port);
    for flag in ["-tls1", "-tls1_1"] {
        let out = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &connect,
                flag,
                "-cipher",
                "DEFAULT:@SECLEVEL=0",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl is installed (.ci/run installs it)");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} handshake succeeded: {text}");
        assert!(
            text.contains("Cipher is (NONE)") && text.contains("alert"),
            "{flag} was not refused with a TLS alert: {text}"
        );
    }
    // The same tool does get through with TLS 1.2, so the refusal above is about the version.
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &connect, "-tls1_2"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TLSv1.2"),
        "TLS 1.2 handshake failed"
    );
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn() {
    let server = Server::start();
    let response = server
        .client()
        .get(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let http1 = server.client_builder().http1_only().build().unwrap();
    let response = http1.get(server.url("/health")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readiness_reports_the_log_and_every_projection() {
    let server = Server::start();
    let response = server
        .client()
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["log"]["reachable"], true);
    let projections = body["projections"].as_array().unwrap();
    assert!(projections.iter().any(|p| p["name"] == "stats"));
    assert!(projections.iter().all(|p| p["state"] == "live"));
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_with_security_headers() {
    let server = Server::start();
    let response = server
        .client()
        .get(server.url("/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.headers().contains_key("strict-transport-security"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn events_appended_by_another_process_reach_the_running_server_within_a_second() {
    let server = Server::start();
    // Another writer on the same embedded log, as `sphere import` would be.
    let log = SqliteLog::open(&server.data_dir).unwrap();
    let written = log
        .append(
            "Patient-foreign",
            ExpectedRevision::NoStream,
            vec![NewEvent::new(
                "ResourceCreated",
                r#"{"resourceType":"Patient"}"#,
            )],
        )
        .await
        .unwrap();
    let client = server.client();
    let started = Instant::now();
    loop {
        let body: serde_json::Value = client
            .get(server.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let applied = body["projections"][0]["applied"].as_u64().unwrap_or(0);
        if applied >= written.position.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the server's projections did not see the foreign append within a second: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log.close().await.unwrap();
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let server = Server::start();
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn tls_can_be_turned_off_for_a_proxy_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path(), &[], &[("SPHERE_TLS", "false")]);
    assert!(server.base.starts_with("http://"));
    let response = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn invalid_configuration_stops_the_start_with_one_line_per_problem() {
    let out = sphere()
        .args(["serve"])
        .env("SPHERE_LISTEN", "not-an-address")
        .env("SPHERE_TLS", "perhaps")
        .env("SPHERE_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "the env parse problem is reported first: {stderr}"
    );
    assert!(lines[0].contains("SPHERE_TLS"));
    let out = sphere()
        .args(["serve"])
        .env("SPHERE_LISTEN", "not-an-address")
        .env("SPHERE_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.lines().all(|l| l.starts_with("config: ")));
}

#[test]
fn a_corrupt_event_log_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.sqlite3");
    let garbage = b"this is not a database, and it must not be overwritten ".repeat(200);
    std::fs::write(&file, &garbage).unwrap();
    let out = sphere()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not a readable Sphere event log"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), garbage);
}

#[test]
fn an_unwritable_data_directory_is_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file-not-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let out = sphere()
        .args(["log", "stats", "--data-dir"])
        .arg(blocker.join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot create data directory"), "{stderr}");
}
