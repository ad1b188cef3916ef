//! Bulk Data export figures (issue 7): a full Group export of N synthetic patients (default
//! 1,000), resources per second from kick-off to manifest; an incremental `_since` export
//! after 1% of the resources changed, and how much faster it is; peak RSS during each export.
//!
//! `cargo bench --bench bulk_export` (SPHERE_BENCH_PATIENTS sets N; SPHERE_BENCH_DIR puts the
//! store on another disk). The export runs in-process through the export worker, exactly as the
//! kick-off handler submits it (the HTTP round trips around it are a few milliseconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use sphere::bulk::job::{ExportLevel, ExportRequested, JobStatus, OutputFormat};
use sphere::bulk::storage::ExportStorage;
use sphere::bulk::worker::ExportWorker;
use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventLog, ExpectedRevision, NewEvent, StreamWrite};
use sphere_domain::resource::{RESOURCE_CREATED, RESOURCE_UPDATED};
use sphere_domain::synthetic::{self, GenerateConfig};

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("SPHERE_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).expect("bench dir"),
        Err(_) => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench dir"),
    }
}

/// Peak resident set size since the last reset, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Resets the peak so the next reading covers only what follows.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn write_batch(log: &SqliteLog, batch: &mut Vec<Value>, event_type: &str) {
    let writes = batch
        .drain(..)
        .map(|r| {
            let stream = format!(
                "{}-{}",
                r["resourceType"].as_str().expect("type"),
                r["id"].as_str().expect("id")
            );
            StreamWrite {
                stream,
                expected: ExpectedRevision::Any,
                events: vec![NewEvent::new(
                    event_type,
                    Bytes::from(serde_json::to_vec(&r).expect("JSON")),
                )],
            }
        })
        .collect();
    log.append_multi(writes).await.expect("append");
}

async fn export(
    worker: &ExportWorker,
    log: &SqliteLog,
    group: &str,
    since_ms: Option<i64>,
) -> (Duration, u64, f64) {
    reset_peak_rss();
    let started = Instant::now();
    let head = log.head().await.expect("head").map(|p| p.0);
    let last = log
        .read_all(
            head.and_then(|h| h.checked_sub(1))
                .map(sphere::eventlog::Position),
            &sphere::eventlog::EventFilter::all(),
            1,
        )
        .await
        .expect("read");
    let since_position =
        since_ms.and_then(|ms| worker.jobs.position_for_transaction_time(ms).flatten());
    let job_id = uuid::Uuid::new_v4().simple().to_string();
    worker
        .submit(ExportRequested {
            job_id: job_id.clone(),
            request: format!("bench/Group/{group}/$export"),
            level: ExportLevel::Group { id: group.into() },
            patients: vec![],
            types: vec![],
            elements: vec![],
            type_filters: vec![],
            organize_by_patient: false,
            output_format: OutputFormat::Ndjson,
            access: None,
            since_ms,
            since_position,
            until_ms: None,
            position: head,
            transaction_ms: last.first().map(|e| e.commit_ms()).unwrap_or(0),
            client_id: "bench".into(),
            requested_ms: 0,
        })
        .await
        .expect("submit");
    let manifest = loop {
        let job = worker.jobs.get(&job_id).expect("job");
        match job.status {
            JobStatus::Completed(done) => break done.manifest,
            JobStatus::Running => tokio::time::sleep(Duration::from_millis(2)).await,
            other => panic!("export ended {other:?}"),
        }
    };
    let elapsed = started.elapsed();
    let count: u64 = ["output", "deleted"]
        .iter()
        .flat_map(|k| manifest[k].as_array().cloned().unwrap_or_default())
        .map(|e| e["count"].as_u64().unwrap_or(0))
        .sum();
    (elapsed, count, peak_rss_mib())
}

fn main() {
    let patients: u32 = std::env::var("SPHERE_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = bench_dir();
        let log = SqliteLog::open(&dir.path().join("log")).expect("open");
        let config = GenerateConfig {
            patients,
            ..GenerateConfig::default()
        };
        let loaded = Instant::now();
        // Streamed into the log a few patients at a time; only the 1% that will change is
        // kept, so the process's memory afterwards is the export's own.
        let mut sample = Vec::new();
        let mut total = 0usize;
        let mut batch = Vec::new();
        let mut keep = |r: Value, batch: &mut Vec<Value>| {
            if total.is_multiple_of(100) && r["resourceType"] != "Group" {
                sample.push(r.clone());
            }
            total += 1;
            batch.push(r);
        };
        synthetic::shared_resources(&config, &mut |r| keep(r, &mut batch));
        for index in 0..patients {
            synthetic::patient_record(&config, index, &mut |r| keep(r, &mut batch));
            if batch.len() >= 2000 {
                write_batch(&log, &mut batch, RESOURCE_CREATED).await;
            }
        }
        synthetic::groups(&config, &mut |r| keep(r, &mut batch));
        write_batch(&log, &mut batch, RESOURCE_CREATED).await;
        println!(
            "loaded {patients} patients, {total} resources in {:.1}s",
            loaded.elapsed().as_secs_f64()
        );

        let storage = Arc::new(ExportStorage::local(dir.path().join("exports")).expect("storage"));
        let shared: Arc<dyn EventLog> = Arc::new(log.clone());
        let worker = ExportWorker::new(shared, storage, "https://bench/files".into(), i64::MAX / 2);
        let group = synthetic::all_patients_group_id(&config);

        let (full, full_count, full_rss) = export(&worker, &log, &group, None).await;
        println!(
            "full Group export: {full_count} resources in {:.3}s = {:.0} resources/s, peak RSS {full_rss:.0} MiB",
            full.as_secs_f64(),
            full_count as f64 / full.as_secs_f64()
        );
        let first = worker
            .jobs
            .all()
            .into_iter()
            .find(|j| matches!(j.status, JobStatus::Completed(_)))
            .expect("first export");

        // 1% of the resources change (every 100th, skipping the Groups).
        let mut changed = 0;
        for mut r in sample {
            r["meta"]["versionId"] = Value::from("2");
            batch.push(r);
            changed += 1;
        }
        write_batch(&log, &mut batch, RESOURCE_UPDATED).await;

        let (inc, inc_count, inc_rss) =
            export(&worker, &log, &group, Some(first.requested.transaction_ms)).await;
        println!(
            "incremental export after {changed} changes: {inc_count} resources in {:.3}s ({:.1}x faster than full), peak RSS {inc_rss:.0} MiB",
            inc.as_secs_f64(),
            full.as_secs_f64() / inc.as_secs_f64()
        );
    });
}
