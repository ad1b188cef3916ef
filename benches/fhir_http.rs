//! Load generator for the FHIR API against the real server binary over TLS:
//!
//! 1. ingest: transaction Bundles (Patients with their Observations, `urn:uuid` references)
//!    posted by a few concurrent clients; reports resources/s (durable: every response comes
//!    after the group commit is fsynced, and after the projections applied it).
//! 2. read by id: 64 connections (one HTTP/1.1 client each) reading random Patients among
//!    1,000 for a fixed time; reports requests/s and latency percentiles.
//!
//! `cargo bench --bench fhir_http` (environment: `FHIR_BENCH_SECONDS`, default 10;
//! `FHIR_BENCH_CONNECTIONS`, default 64; `FHIR_BENCH_AUDIT`: `on`, `off`, or both by default,
//! which runs the whole scenario without and then with the access history and prints the
//! ratio of read throughputs; `FHIR_BENCH_GROUP_COMMIT_MS`, default 2, the access history's
//! least time between commits). The generator runs on the same machine as the
//! server, so both share its cores.

#[path = "../tests/support/mod.rs"]
mod support;

#[path = "../tests/fhir_common/mod.rs"]
mod fhir_common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Server;

const PATIENTS: usize = 1000;
const OBSERVATIONS_PER_PATIENT: usize = 4;
const PATIENTS_PER_BUNDLE: usize = 50;
const INGEST_CLIENTS: usize = 4;

fn patient(n: usize) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "urn:bench:mrn", "value": format!("mrn-{n}")}],
        "name": [{"family": format!("Family{n}"), "given": ["Bench"]}],
        "gender": if n.is_multiple_of(2) { "female" } else { "male" },
        "birthDate": "1980-05-17",
    })
}

fn observation(subject: &str, k: usize) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2024-01-01T10:00:00Z",
        "valueQuantity": {"value": 90 + k, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    })
}

fn bundle(first: usize) -> Value {
    let mut entries = Vec::new();
    for n in first..first + PATIENTS_PER_BUNDLE {
        let full_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        entries.push(json!({"fullUrl": full_url, "resource": patient(n), "request": {"method": "POST", "url": "Patient"}}));
        for k in 0..OBSERVATIONS_PER_PATIENT {
            entries.push(json!({"resource": observation(&full_url, k), "request": {"method": "POST", "url": "Observation"}}));
        }
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo bench` passes `--bench`; libtest-style filters are not supported here.
    let seconds: u64 = std::env::var("FHIR_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let connections: usize = std::env::var("FHIR_BENCH_CONNECTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    // Read throughput with the access history off (the baseline) and on: every read is
    // recorded, durably, before it is answered.
    let modes: &[bool] = match std::env::var("FHIR_BENCH_AUDIT").as_deref() {
        Ok("on") => &[true],
        Ok("off") => &[false],
        _ => &[false, true],
    };
    let mut rates = Vec::new();
    for &audit in modes {
        println!("--- access history {}", if audit { "on" } else { "off" });
        rates.push(scenario(audit, seconds, connections));
    }
    if let [off, on] = rates[..] {
        println!(
            "read throughput with the access history / without: {:.3} ({on:.0} / {off:.0} req/s)",
            on / off
        );
    }
}

/// Ingests the population, then reads by id for `seconds`; returns requests/s.
fn scenario(audit: bool, seconds: u64, connections: usize) -> f64 {
    let group_commit_ms: u64 = std::env::var("FHIR_BENCH_GROUP_COMMIT_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    // The per-app rate limit (1,000/s by default) would measure the limiter, not the server.
    let data = tempfile::tempdir().expect("temp dir");
    let config = data.path().join("bench.toml");
    std::fs::write(
        &config,
        format!("[smart]\nrate_limit_per_second = 1000000\nrate_limit_burst = 1000000\n[audit]\nenabled = {audit}\ngroup_commit_ms = {group_commit_ms}\n"),
    )
    .expect("write bench config");
    let server = Server::start_in(
        &data.path().join("data"),
        &["--config", config.to_str().expect("utf-8 temp path")],
        &[],
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rate = runtime.block_on(async {
        // --- ingest
        let bundles: Vec<Value> = (0..PATIENTS / PATIENTS_PER_BUNDLE)
            .map(|b| bundle(b * PATIENTS_PER_BUNDLE))
            .collect();
        let bodies: Vec<Vec<u8>> = bundles
            .iter()
            .map(|b| serde_json::to_vec(b).expect("bundle serializes"))
            .collect();
        let resources = PATIENTS * (1 + OBSERVATIONS_PER_PATIENT);
        let queue = Arc::new(std::sync::Mutex::new(bodies));
        let url = server.url("/fhir/r4");
        let started = Instant::now();
        let mut tasks = Vec::new();
        let authorized = fhir_common::authorized_client_builder(&server).await;
        let ingest_client = authorized.build().expect("client");
        for _ in 0..INGEST_CLIENTS {
            let client = ingest_client.clone();
            let queue = queue.clone();
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut patients = Vec::new();
                loop {
                    let next = queue.lock().expect("queue lock").pop();
                    let Some(body) = next else { break };
                    let r = client
                        .post(&url)
                        .header("content-type", "application/fhir+json")
                        .body(body)
                        .send()
                        .await
                        .expect("transaction sent");
                    assert_eq!(r.status(), 200, "transaction failed");
                    let v: Value = r.json().await.expect("transaction-response");
                    for e in v["entry"].as_array().expect("entries") {
                        let loc = e["response"]["location"].as_str().unwrap_or("");
                        if loc.starts_with("Patient/") {
                            patients.push(loc.split("/_history").next().unwrap_or("").to_owned());
                        }
                    }
                }
                patients
            }));
        }
        let mut patients = Vec::new();
        for t in tasks {
            patients.extend(t.await.expect("ingest task"));
        }
        let elapsed = started.elapsed();
        println!(
            "ingest: {resources} resources in {} transactions of {} entries, {INGEST_CLIENTS} clients: {:.2?} -> {:.0} resources/s",
            PATIENTS / PATIENTS_PER_BUNDLE,
            PATIENTS_PER_BUNDLE * (1 + OBSERVATIONS_PER_PATIENT),
            elapsed,
            resources as f64 / elapsed.as_secs_f64()
        );
        assert_eq!(patients.len(), PATIENTS);

        // --- read by id
        let patients = Arc::new(patients);
        let stop = Arc::new(AtomicBool::new(false));
        // Every client (each with its own token) is built before the first request: the
        // clock starts when they all start, so setting up the later ones does not count as
        // time while the earlier ones already read.
        let mut clients = Vec::with_capacity(connections);
        for _ in 0..connections {
            clients.push(
                fhir_common::authorized_client_builder(&server)
                    .await
                    .http1_only()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client"),
            );
        }
        let mut tasks = Vec::new();
        for (c, client) in clients.into_iter().enumerate() {
            let patients = patients.clone();
            let stop = stop.clone();
            let base = server.url("/fhir/r4/");
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(100_000);
                let mut i = c * 7919;
                let mut errors = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let id = &patients[(i >> 33) % patients.len()];
                    let t = Instant::now();
                    match client.get(format!("{base}{id}")).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            latencies.push(t.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        // Warm-up of one second is part of the run but excluded from nothing: keep it simple
        // and long enough that it does not matter.
        let started = Instant::now();
        println!("reading: {connections} clients started, clock running for {seconds} s");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.expect("read task");
            all.extend(l);
            errors += e;
        }
        let elapsed = started.elapsed();
        all.sort();
        println!(
            "read by id: {connections} connections, {} patients, {:.1?}: {} requests ({errors} errors) -> {:.0} req/s; p50 {:.2?} p90 {:.2?} p99 {:.2?} max {:.2?}",
            PATIENTS,
            elapsed,
            all.len(),
            all.len() as f64 / elapsed.as_secs_f64(),
            percentile(&all, 0.50),
            percentile(&all, 0.90),
            percentile(&all, 0.99),
            all.last().copied().unwrap_or_default(),
        );
        all.len() as f64 / elapsed.as_secs_f64()
    });
    drop(server);
    rate
}
