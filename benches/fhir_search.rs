//! FHIR search benchmark (a load generator against the real server): loads the synthetic
//! population (SPHERE_BENCH_PATIENTS, default 1,000) into the event log, times
//! `sphere rebuild search` (resources/s), then measures `Observation?patient=X&category=laboratory`
//! requests/s at 64 concurrent connections and the search-after-write visibility median.
//!
//! Run: `cargo bench --bench fhir_search` (`FHIR_BENCH_AUDIT=off` without the access history).
//! The load generator shares the machine's cores with the server, so requests/s is a lower
//! bound.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::Client;
use serde_json::{json, Value};
use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventLog, ExpectedRevision, NewEvent, StreamWrite};
use sphere_domain::synthetic::{self, GenerateConfig};
use support::{sphere, Server};

fn pkcs1_len(der: &[u8]) -> usize {
    for i in 0..der.len() {
        if der[i] == 0x04 && der.get(i + 1) == Some(&0x82) {
            let len = ((der[i + 2] as usize) << 8) | der[i + 3] as usize;
            if i + 4 + len == der.len() && der[i + 4] == 0x30 {
                return len;
            }
        }
    }
    panic!("not a PKCS#8 RSA key");
}

async fn authorized_client(server: &Server) -> Client {
    let kid = "bench".to_owned();
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("key");
    let der = pair.serialize_der();
    let key = EncodingKey::from_rsa_der(&der[der.len() - pkcs1_len(&der)..]);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS384).expect("jwk");
    jwk.common.key_id = Some(kid.clone());
    let scope = "system/*.cruds";
    let app: Value = server
        .client()
        .post(server.url("/auth/register"))
        .json(&json!({"client_name": "bench", "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [jwk]}, "scope": scope}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = app["client_id"].as_str().expect("client id").to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some(kid);
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": format!("{}/auth/token", server.base),
            "exp": now + 240, "jti": uuid::Uuid::new_v4().to_string()}),
        &key,
    )
    .expect("sign");
    let body: Value = server
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
        .expect("token")
        .json()
        .await
        .expect("json");
    let token = body["access_token"].as_str().expect("access token");
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    server
        .client_builder()
        .default_headers(headers)
        .pool_max_idle_per_host(64)
        .build()
        .expect("client")
}

async fn append(log: &SqliteLog, batch: &mut Vec<Value>) -> u64 {
    let n = batch.len() as u64;
    if n == 0 {
        return 0;
    }
    let writes: Vec<StreamWrite> = batch
        .drain(..)
        .map(|mut r| {
            r["meta"]["versionId"] = json!("1");
            r["meta"]["lastUpdated"] = json!("2025-06-01T12:00:00.000Z");
            StreamWrite {
                stream: format!(
                    "{}-{}",
                    r["resourceType"].as_str().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default()
                ),
                expected: ExpectedRevision::Any,
                events: vec![NewEvent::new(
                    "ResourceCreated",
                    serde_json::to_vec(&r).expect("json"),
                )],
            }
        })
        .collect();
    log.append_multi(writes).await.expect("append");
    n
}

/// Streams the population into the log, a few thousand resources per commit.
async fn load(dir: &std::path::Path, config: &GenerateConfig) -> u64 {
    let log = SqliteLog::open(dir).expect("open log");
    let mut batch = Vec::new();
    let mut total = 0;
    synthetic::shared_resources(config, &mut |r| batch.push(r));
    total += append(&log, &mut batch).await;
    for i in 0..config.patients {
        synthetic::patient_record(config, i, &mut |r| batch.push(r));
        if batch.len() >= 2000 {
            total += append(&log, &mut batch).await;
        }
    }
    synthetic::groups(config, &mut |r| batch.push(r));
    total += append(&log, &mut batch).await;
    log.close().await.expect("close");
    total
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let patients: u32 = std::env::var("SPHERE_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seconds: u64 = std::env::var("SPHERE_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let temp = tempfile::tempdir().expect("temp dir");
    let config = GenerateConfig {
        patients,
        ..GenerateConfig::default()
    };
    let started = Instant::now();
    let resources = load(temp.path(), &config).await;
    println!(
        "loaded {resources} resources ({patients} patients) into the log in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let out = sphere()
        .args(["rebuild", "search", "--data-dir"])
        .arg(temp.path())
        .env("SPHERE_LOG_LEVEL", "warn")
        .output()
        .expect("sphere rebuild");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rebuild search: {resources} resources in {secs:.1}s = {:.0} resources/s (process start included)",
        resources as f64 / secs
    );

    // The per-app rate limit (1,000/s by default) would measure the limiter, not the search.
    // `FHIR_BENCH_AUDIT=off` measures without the access history (default on, as deployed).
    let audit = std::env::var("FHIR_BENCH_AUDIT").as_deref() != Ok("off");
    let config_file = temp.path().join("bench.toml");
    std::fs::write(
        &config_file,
        format!("[smart]\nrate_limit_per_second = 1000000\nrate_limit_burst = 1000000\n[audit]\nenabled = {audit}\n"),
    )
    .expect("write bench config");
    println!("access history {}", if audit { "on" } else { "off" });
    let server = Server::start_in(
        temp.path(),
        &["--config", config_file.to_str().expect("utf-8 temp path")],
        &[],
    );
    let client = authorized_client(&server).await;
    let ids: Arc<Vec<String>> = Arc::new(
        (0..patients)
            .map(|i| synthetic::patient_id(&config, i))
            .collect(),
    );
    // Warm up and check the hit count the issue names (20-50).
    let mut hits = Vec::new();
    for id in ids.iter().take(20) {
        let b: Value = client
            .get(server.url(&format!(
                "/fhir/r4/Observation?patient={id}&category=laboratory"
            )))
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        hits.push(b["total"].as_u64().unwrap_or(0));
    }
    hits.sort_unstable();
    println!(
        "hits per search (first 20 patients): median {}",
        hits[hits.len() / 2]
    );

    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..64usize {
        let client = client.clone();
        let ids = ids.clone();
        let done = done.clone();
        let errors = errors.clone();
        let base = server.base.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = worker;
            while Instant::now() < deadline {
                let id = &ids[n % ids.len()];
                n += 64;
                let url = format!("{base}/fhir/r4/Observation?patient={id}&category=laboratory");
                match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let t0 = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    println!(
        "Observation?patient=X&category=laboratory: {:.0} requests/s at 64 connections ({} ok, {} errors in {elapsed:.1}s)",
        done.load(Ordering::Relaxed) as f64 / elapsed,
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );

    let mut latencies = Vec::new();
    for n in 0..200 {
        let family = format!("Bench{n}x{}", uuid::Uuid::new_v4().simple());
        let r = client
            .post(server.url("/fhir/r4/Patient"))
            .header("content-type", "application/fhir+json")
            .json(&json!({"resourceType": "Patient", "name": [{"family": family}]}))
            .send()
            .await
            .expect("create");
        assert_eq!(r.status(), 201);
        let t = Instant::now();
        let b: Value = client
            .get(server.url(&format!("/fhir/r4/Patient?family={family}")))
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        assert_eq!(b["total"], 1, "a search after a write sees it");
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "search-after-write visibility: median {:.1} ms, p99 {:.1} ms (200 writes)",
        latencies[latencies.len() / 2].as_secs_f64() * 1000.0,
        latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0
    );
}
