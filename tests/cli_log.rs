//! `sphere log` and `sphere rebuild`: what operators and auditors run against a data directory.

mod support;

use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{Actor, EventLog, EventMetadata, ExpectedRevision, NewEvent};
use support::sphere;

async fn seed(dir: &std::path::Path) {
    let log = SqliteLog::open(dir).unwrap();
    let who = EventMetadata {
        actor: Some(Actor {
            client_id: Some("demo-app".into()),
            user: Some("alice".into()),
            token_id: None,
        }),
        ..EventMetadata::default()
    };
    for i in 0..3 {
        log.append(
            "Patient-p1",
            ExpectedRevision::Any,
            vec![NewEvent::new(
                "ResourceUpdated",
                format!(r#"{{"resourceType":"Patient","n":{i}}}"#),
            )
            .with_metadata(who.clone())],
        )
        .await
        .unwrap();
    }
    log.append(
        "grant-g1",
        ExpectedRevision::Any,
        vec![NewEvent::new("GrantIssued", "{}")],
    )
    .await
    .unwrap();
    log.close().await.unwrap();
}

fn run(args: &[&str], dir: &std::path::Path) -> String {
    let out = sphere()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn log_read_shows_a_stream_with_its_actors() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path()).await;
    let text = run(&["log", "read", "Patient-p1"], dir.path());
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("Patient-p1@0"));
    assert!(text.contains("demo-app/alice"));
    let json = run(
        &["log", "read", "Patient-p1", "--json", "--backwards"],
        dir.path(),
    );
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["revision"], 2);
    assert_eq!(first["data"]["n"], 2);
    assert_eq!(first["metadata"]["actor"]["user"], "alice");
}

#[tokio::test]
async fn log_read_of_a_missing_stream_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path()).await;
    let out = sphere()
        .args(["log", "read", "Patient-nobody", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

#[tokio::test]
async fn log_tail_and_stats_summarize_the_log() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path()).await;
    let tail = run(&["log", "tail", "-n", "2"], dir.path());
    let lines: Vec<_> = tail.lines().collect();
    assert_eq!(lines.len(), 2, "{tail}");
    assert!(lines[1].contains("grant-g1@0"));
    let only_grants = run(&["log", "tail", "--category", "grant"], dir.path());
    assert_eq!(only_grants.lines().count(), 1);
    let stats = run(&["log", "stats", "--json"], dir.path());
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["events"], 4);
    assert_eq!(stats["streams"], 2);
}

#[tokio::test]
async fn rebuild_replays_the_log_into_a_projection() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path()).await;
    let text = run(&["rebuild", "stats"], dir.path());
    assert!(text.contains("rebuilt stats: 4 events"), "{text}");
    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("projections/stats.json")).unwrap())
            .unwrap();
    assert_eq!(stored["events"], 4);
    assert_eq!(stored["checkpoint"], 4);
    let out = sphere()
        .args(["rebuild", "nonsense", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("known: stats"));
}
