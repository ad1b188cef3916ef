//! Replaying a day's access history: 1,000,000 `AccessRecorded` events in one `audit-{day}`
//! stream, replayed by the real `sphere audit` binary (read-only open of the log) to NDJSON,
//! to Parquet, and filtered by patient ("who saw patient X"). Target: under 10 s each.
//!
//! `cargo bench --bench audit_replay` (environment: `AUDIT_BENCH_EVENTS`, default 1,000,000).

use std::process::Command;
use std::time::Instant;

use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventLog, ExpectedRevision, NewEvent};
use sphere_domain::audit::{stream_for, AccessRecord, ACCESS_RECORDED};

/// 2026-01-01T00:00:00Z: the day replayed.
const DAY_MS: i64 = 1_767_225_600_000;

fn access(n: usize, per_ms: f64) -> AccessRecord {
    let patient = format!("p{}", n % 5000);
    let search = n.is_multiple_of(4);
    AccessRecord {
        recorded_ms: DAY_MS + (n as f64 * per_ms) as i64,
        interaction: if search { "search-type" } else { "read" }.into(),
        types: vec![if search { "Observation" } else { "Patient" }.into()],
        ids: if search {
            (0..5).map(|k| format!("Observation/o{n}-{k}")).collect()
        } else {
            vec![format!("Patient/{patient}")]
        },
        query: search.then(|| format!("patient={patient}&category=laboratory")),
        patients: vec![patient.clone()],
        client_id: Some(format!("app-{}", n % 20)),
        user: n.is_multiple_of(3).then(|| format!("user{}", n % 100)),
        token_id: Some(format!("{:032x}", n / 100)),
        source_ip: Some("10.0.0.7".into()),
        method: "GET".into(),
        path: if search {
            "/fhir/r4/Observation".into()
        } else {
            format!("/fhir/r4/Patient/{patient}")
        },
        status: 200,
        ..Default::default()
    }
}

fn timed(label: &str, data: &std::path::Path, args: &[&str]) -> f64 {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sphere"))
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run sphere audit");
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "{label}: {:.2} s ({})",
        secs,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    secs
}

fn main() {
    let events: usize = std::env::var("AUDIT_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let log = SqliteLog::open(&data).expect("open log");
        let per_ms = 86_400_000.0 / events as f64;
        let stream = stream_for(DAY_MS);
        const BATCH: usize = 10_000;
        for first in (0..events).step_by(BATCH) {
            let batch: Vec<NewEvent> = (first..(first + BATCH).min(events))
                .map(|n| NewEvent::json(ACCESS_RECORDED, &access(n, per_ms)).expect("json"))
                .collect();
            log.append(&stream, ExpectedRevision::Any, batch)
                .await
                .expect("append");
        }
        log.close().await.expect("close");
    });
    println!(
        "setup: {events} access events in one day stream, written in {:.1?}",
        started.elapsed()
    );
    let out = dir.path().join("out");
    let ndjson = out.with_extension("ndjson");
    let parquet = out.with_extension("parquet");
    let a = timed(
        "replay to NDJSON",
        &data,
        &[
            "--format",
            "ndjson",
            "--out",
            ndjson.to_str().expect("utf-8"),
        ],
    );
    let b = timed(
        "replay to Parquet",
        &data,
        &[
            "--format",
            "parquet",
            "--out",
            parquet.to_str().expect("utf-8"),
        ],
    );
    let c = timed(
        "who saw patient p42 (NDJSON)",
        &data,
        &[
            "--patient",
            "p42",
            "--format",
            "ndjson",
            "--out",
            ndjson.to_str().expect("utf-8"),
        ],
    );
    let c2 = timed(
        "what did app-7 touch on 2026-01-01 (NDJSON)",
        &data,
        &[
            "--client",
            "app-7",
            "--since",
            "2026-01-01",
            "--until",
            "2026-01-01",
            "--format",
            "ndjson",
            "--out",
            ndjson.to_str().expect("utf-8"),
        ],
    );
    let sizes = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "files: ndjson {} MB (last run), parquet {} MB",
        sizes(&ndjson) / 1_000_000,
        sizes(&parquet) / 1_000_000
    );
    let worst = a.max(b).max(c).max(c2);
    println!(
        "slowest replay of {events} events: {worst:.2} s (target < 10 s): {}",
        if worst < 10.0 { "ok" } else { "TOO SLOW" }
    );
}
