//! SMART token figures, in process (warp's test transport, no TLS: TLS costs the same with
//! or without a token, so it would only blur the comparison):
//! - `client_credentials` token issue per second (signed-assertion check, jti spent once in
//!   the log, grant + token events appended, token-status view caught up, JWT signed);
//! - read-by-id with a real JWT and the token-status check, against the same read with the
//!   token's validation cost taken out (the validation measured on its own).
//!
//! Run: `cargo bench --bench smart_tokens` (SMART_BENCH_TOKENS, SMART_BENCH_READS to resize).

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sphere::app::App;
use sphere::config::{Config, Overrides};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn call(
    routes: &warp::filters::BoxedFilter<(warp::reply::Response,)>,
    request: warp::test::RequestBuilder,
) -> (u16, bytes::Bytes) {
    let response = request.reply(routes).await;
    (response.status().as_u16(), response.body().clone())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::load_from(
        &Overrides {
            data_dir: Some(dir.path().to_owned()),
            ..Overrides::default()
        },
        |_| None,
    )
    .expect("config");
    // The benchmark measures issue and validation, not the rate limiter.
    config.smart.rate_limit_per_second = 10_000_000;
    config.smart.rate_limit_burst = 10_000_000;
    let app = App::start(config).await.expect("start");
    let routes = sphere::http::routes(app.clone());
    let token_url = format!("{}/auth/token", app.config.base_url());

    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let key = EncodingKey::from_ec_der(&pair.serialize_der());
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES384).expect("jwk");
    jwk.common.key_id = Some("bench".into());
    let (status, body) = call(
        &routes,
        warp::test::request()
            .method("POST")
            .path("/auth/register")
            .json(&json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
                "jwks": {"keys": [jwk]}, "scope": "system/*.cruds"})),
    )
    .await;
    assert_eq!(status, 201, "{body:?}");
    let client_id = serde_json::from_slice::<Value>(&body).expect("json")["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();

    let tokens = env_usize("SMART_BENCH_TOKENS", 4000);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut header = Header::new(Algorithm::ES384);
    header.kid = Some("bench".into());
    // Assertions are signed before the clock starts: the client's signing is not the server's cost.
    let forms: Vec<String> = (0..tokens)
        .map(|i| {
            let assertion = jsonwebtoken::encode(
                &header,
                &json!({"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 280, "jti": format!("bench-{i}")}),
                &key,
            )
            .expect("sign");
            format!("grant_type=client_credentials&scope=system%2F*.cruds&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}")
        })
        .collect();
    let concurrency = 64;
    let forms = Arc::new(forms);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (forms, next, routes) = (forms.clone(), next.clone(), routes.clone());
        tasks.push(tokio::spawn(async move {
            let mut last = None;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= forms.len() {
                    return last;
                }
                let (status, body) = call(
                    &routes,
                    warp::test::request()
                        .method("POST")
                        .path("/auth/token")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(forms[i].clone()),
                )
                .await;
                assert_eq!(status, 200, "{body:?}");
                last = Some(body);
            }
        }));
    }
    let mut token = String::new();
    for t in tasks {
        if let Some(body) = t.await.expect("task") {
            token = serde_json::from_slice::<Value>(&body).expect("json")["access_token"]
                .as_str()
                .expect("token")
                .to_owned();
        }
    }
    let elapsed = started.elapsed();
    println!(
        "client_credentials issue: {tokens} tokens in {:.2} s = {:.0}/s ({concurrency} concurrent)",
        elapsed.as_secs_f64(),
        tokens as f64 / elapsed.as_secs_f64()
    );

    let (status, body) = call(
        &routes,
        warp::test::request()
            .method("PUT")
            .path("/fhir/r4/Patient/p1")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType": "Patient", "id": "p1", "gender": "female", "name": [{"family": "Doe"}]}).to_string()),
    )
    .await;
    assert!(status < 300, "{status} {body:?}");

    let reads = env_usize("SMART_BENCH_READS", 20_000);
    let bearer = format!("Bearer {token}");
    let started = Instant::now();
    for _ in 0..reads {
        let (status, _) = call(
            &routes,
            warp::test::request()
                .method("GET")
                .path("/fhir/r4/Patient/p1")
                .header("authorization", bearer.as_str()),
        )
        .await;
        assert_eq!(status, 200);
    }
    let with_auth = started.elapsed();
    let started = Instant::now();
    for _ in 0..reads {
        app.smart.validate_bearer(Some(&bearer)).expect("valid");
    }
    let validation = started.elapsed();
    let per = |d: Duration| d.as_secs_f64() * 1e6 / reads as f64;
    let read_with = per(with_auth);
    let check = per(validation);
    let read_without = read_with - check;
    println!(
        "read-by-id with JWT: {read_with:.1} us/read ({:.0}/s); token validation alone: {check:.1} us; \
         read without it: {read_without:.1} us ({:.0}/s); with/without throughput = {:.1}%",
        1e6 / read_with,
        1e6 / read_without,
        100.0 * read_without / read_with
    );
    app.shutdown().await;
}
