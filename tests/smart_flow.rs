//! The SMART authorization server as a certification run meets it: real binary, real TLS,
//! discovery, registration, login and consent (as form posts), tokens, refresh, revocation,
//! introspection, backend services, and the attacks the issue lists.

mod support;

use std::collections::HashMap;

use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{sphere, Server};

const SCOPES: &str = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Observation.rs patient/Condition.rs";

fn cli(server: &Server, args: &[&str]) -> String {
    let out = sphere()
        .args(args)
        .arg("--data-dir")
        .arg(&server.data_dir)
        .output()
        .expect("run sphere");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn no_redirects(server: &Server) -> reqwest::Client {
    server
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn register(server: &Server, body: Value) -> Value {
    let r = server
        .client()
        .post(server.url("/auth/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    r.json().await.unwrap()
}

/// A user added by the CLI while the server runs becomes usable within a few seconds.
async fn add_user(server: &Server, username: &str, link: &[&str]) {
    let mut args = vec![
        "users",
        "add",
        "--username",
        username,
        "--password",
        "password-123",
    ];
    args.extend_from_slice(link);
    cli(server, &args);
}

fn pkce() -> (String, String) {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

struct Flow {
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    scope: String,
}

/// Authorize, sign in, consent with `ticked` (None: everything offered checked), return the
/// redirect's query.
async fn authorize(
    server: &Server,
    flow: &Flow,
    username: &str,
    ticked: Option<&[&str]>,
) -> HashMap<String, String> {
    let browser = no_redirects(server);
    let mut params = vec![
        ("response_type", "code".to_owned()),
        ("client_id", flow.client_id.clone()),
        ("redirect_uri", flow.redirect_uri.clone()),
        ("scope", flow.scope.clone()),
        ("state", "st-123".to_owned()),
        ("aud", format!("{}/fhir/r4", server.base)),
    ];
    if let Some(c) = &flow.challenge {
        params.push(("code_challenge", c.clone()));
        params.push(("code_challenge_method", "S256".to_owned()));
    }
    let page = browser
        .get(server.url("/auth/authorize"))
        .query(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let login = page.text().await.unwrap();
    assert!(login.contains("name=\"username\"") && login.contains("name=\"password\""));
    let txn = hidden(&login, "txn");
    let csrf = hidden(&login, "csrf");
    let r = browser
        .post(server.url("/auth/login"))
        .form(&[
            ("txn", txn.as_str()),
            ("csrf", csrf.as_str()),
            ("username", username),
            ("password", "password-123"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let consent = browser
        .get(server.url(&location))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200);
    assert!(consent.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let consent = consent.text().await.unwrap();
    let mut form: Vec<(String, String)> = vec![
        ("txn".into(), txn.clone()),
        ("csrf".into(), csrf.clone()),
        ("decision".into(), "allow".into()),
    ];
    match ticked {
        Some(scopes) => form.extend(scopes.iter().map(|s| ("scope".to_owned(), s.to_string()))),
        None => form.extend(
            flow.scope
                .split(' ')
                .map(|s| ("scope".to_owned(), s.to_owned())),
        ),
    }
    if consent.contains("name=\"patient\" list") {
        form.push(("patient".into(), "p1".into()));
    }
    let r = browser
        .post(server.url("/auth/consent"))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&flow.redirect_uri), "{location}");
    query_of(&location)
}

async fn token(
    server: &Server,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = server.client().post(server.url("/auth/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

async fn introspect(server: &Server, token: &str, auth: (&str, &str)) -> Value {
    server
        .client()
        .post(server.url("/auth/introspect"))
        .basic_auth(auth.0, Some(auth.1))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_for_user(server: &Server, client_id: &str, redirect_uri: &str, username: &str) {
    // The CLI appended to the log from another process; the server picks it up shortly.
    for _ in 0..100 {
        let (verifier, challenge) = pkce();
        let _ = verifier;
        let browser = no_redirects(server);
        let page = browser
            .get(server.url("/auth/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("scope", "openid"),
                ("state", "s"),
                ("aud", &format!("{}/fhir/r4", server.base)),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if page.contains("name=\"txn\"") {
            let r = browser
                .post(server.url("/auth/login"))
                .form(&[
                    ("txn", hidden(&page, "txn").as_str()),
                    ("csrf", hidden(&page, "csrf").as_str()),
                    ("username", username),
                    ("password", "password-123"),
                ])
                .send()
                .await
                .unwrap();
            if r.status() == 303 {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("user {username} never became usable");
}

#[tokio::test]
async fn discovery_documents_describe_the_server_with_cors() {
    let server = Server::start();
    let client = server.client();
    for path in [
        "/.well-known/smart-configuration",
        "/fhir/r4/.well-known/smart-configuration",
    ] {
        let r = client
            .get(server.url(path))
            .header("origin", "https://app.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        let c: Value = r.json().await.unwrap();
        for key in [
            "issuer",
            "jwks_uri",
            "authorization_endpoint",
            "token_endpoint",
            "introspection_endpoint",
            "revocation_endpoint",
            "registration_endpoint",
            "scopes_supported",
            "response_types_supported",
        ] {
            assert!(!c[key].is_null(), "{key}");
        }
        assert_eq!(c["code_challenge_methods_supported"], json!(["S256"]));
        for g in ["authorization_code", "refresh_token", "client_credentials"] {
            assert!(c["grant_types_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(g)));
        }
        for m in [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ] {
            assert!(c["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(m)));
        }
        for a in ["RS384", "ES384"] {
            assert!(c["token_endpoint_auth_signing_alg_values_supported"]
                .as_array()
                .unwrap()
                .contains(&json!(a)));
        }
        for cap in [
            "launch-standalone",
            "launch-ehr",
            "client-public",
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "sso-openid-connect",
            "context-standalone-patient",
            "context-ehr-patient",
            "context-ehr-encounter",
            "context-banner",
            "context-style",
            "permission-offline",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
            "authorize-post",
        ] {
            assert!(
                c["capabilities"].as_array().unwrap().contains(&json!(cap)),
                "{cap}"
            );
        }
    }
    let oidc: Value = client
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
    ] {
        assert!(!oidc[key].is_null(), "{key}");
    }
    assert!(oidc["id_token_signing_alg_values_supported"]
        .as_array()
        .unwrap()
        .contains(&json!("RS256")));
    let jwks: Value = client
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert!(keys.iter().any(|k| k["kty"] == "RSA"));
    assert!(keys.iter().any(|k| k["kty"] == "EC" && k["crv"] == "P-384"));
    for k in keys {
        assert!(k["kid"].is_string());
        let jwk: Jwk = serde_json::from_value(k.clone()).unwrap();
        jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    }
    let style = client
        .get(server.url("/auth/smart-style.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(style.status(), 200);
    let preflight = client
        .request(reqwest::Method::OPTIONS, server.url("/auth/token"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn standalone_launch_refresh_introspection_and_revocation() {
    let server = Server::start();
    let redirect_uri = "https://app.example/callback";
    let app = register(
        &server,
        json!({
            "client_name": "Confidential", "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "client_secret_basic", "scope": SCOPES,
        }),
    )
    .await;
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    add_user(&server, "alice", &["--patient", "p1"]).await;
    wait_for_user(&server, &client_id, redirect_uri, "alice").await;

    let (verifier, challenge) = pkce();
    let flow = Flow {
        client_id: client_id.clone(),
        redirect_uri: redirect_uri.into(),
        challenge: Some(challenge),
        scope: SCOPES.into(),
    };
    let q = authorize(&server, &flow, "alice", None).await;
    assert_eq!(q["state"], "st-123");
    let code = q["code"].clone();

    // PKCE: missing, wrong and equal-to-challenge verifiers are refused without spending the code.
    for bad in [
        None,
        Some("x".repeat(43)),
        Some(flow.challenge.clone().unwrap()),
    ] {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(b) = &bad {
            form.push(("code_verifier", b.as_str()));
        }
        let (status, body, _) = token(&server, &form, Some((&client_id, &secret))).await;
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(body["error"], "invalid_grant");
    }
    let (status, body, _) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", "BAD_CODE"),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let (status, body, headers) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["pragma"], "no-cache");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["patient"], "p1");
    assert_eq!(body["scope"], SCOPES);
    for key in ["access_token", "refresh_token", "id_token"] {
        assert!(body[key].is_string(), "{key}");
    }
    // The id_token: RS256, a kid from the JWKS, iss, aud = client, fhirUser.
    let id_token = body["id_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let jwks: jsonwebtoken::jwk::JwkSet = server
        .client()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
    v.set_audience(&[&client_id]);
    v.set_issuer(&[&server.base]);
    let claims = jsonwebtoken::decode::<Value>(
        id_token,
        &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(),
        &v,
    )
    .unwrap()
    .claims;
    assert_eq!(
        claims["fhirUser"],
        format!("{}/fhir/r4/Patient/p1", server.base)
    );
    assert!(claims["sub"].as_str().unwrap().len() < 256);

    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let active = introspect(&server, &access, (&client_id, &secret)).await;
    assert_eq!(active["active"], true);
    for key in [
        "client_id",
        "scope",
        "exp",
        "patient",
        "iss",
        "sub",
        "fhirUser",
    ] {
        assert!(!active[key].is_null(), "{key}");
    }

    // The code is single use; reuse revokes what it issued.
    let (status, _, _) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        introspect(&server, &access, (&client_id, &secret)).await,
        json!({"active": false})
    );
    let (status, body, _) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // A fresh authorization: refresh without scope, with the same scope, narrower; never wider.
    let (verifier, challenge) = pkce();
    let flow = Flow {
        challenge: Some(challenge),
        ..flow
    };
    let q = authorize(&server, &flow, "alice", None).await;
    let (_, body, _) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body, _) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body, _) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("scope", SCOPES),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, body, _) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("scope", "patient/Patient.rs patient/Encounter.rs"),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body, _) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("scope", "openid patient/Patient.rs"),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "openid patient/Patient.rs");
    let access = body["access_token"].as_str().unwrap().to_owned();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, _, _) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "random-refresh-token"),
        ],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(status, 400);

    // Revoking the access token ends it and the refresh token, before the call returns.
    let r = server
        .client()
        .post(server.url("/auth/revoke"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        introspect(&server, &access, (&client_id, &secret)).await,
        json!({"active": false})
    );
    let (status, body, _) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        Some((&client_id, &secret)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn limited_and_granular_consent_grants_exactly_what_was_ticked() {
    let server = Server::start();
    let redirect_uri = "https://app.example/cb";
    let app = register(&server, json!({
        "client_name": "Public", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", "scope": SCOPES,
    })).await;
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    assert!(app.get("client_secret").is_none());
    add_user(&server, "bob", &["--patient", "p2"]).await;
    wait_for_user(&server, &client_id, redirect_uri, "bob").await;
    let lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    let (verifier, challenge) = pkce();
    let flow = Flow {
        client_id: client_id.clone(),
        redirect_uri: redirect_uri.into(),
        challenge: Some(challenge),
        scope: SCOPES.into(),
    };
    let q = authorize(
        &server,
        &flow,
        "bob",
        Some(&[
            "launch/patient",
            "openid",
            "fhirUser",
            "patient/Patient.rs",
            lab,
        ]),
    )
    .await;
    let r = server
        .client()
        .post(server.url("/auth/token"))
        .header("origin", "https://app.example")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["scope"],
        format!("launch/patient openid fhirUser patient/Patient.rs {lab}")
    );
    assert!(body["id_token"].is_string());
    assert!(
        body.get("refresh_token").is_none(),
        "no offline_access granted"
    );

    // A public client without PKCE gets no code; nor does a wrong aud, nor plain PKCE.
    let browser = no_redirects(&server);
    for (aud, method) in [
        (format!("{}/fhir/r4", server.base), None),
        ("https://evil.example/fhir".to_owned(), Some("S256")),
        (format!("{}/fhir/r4", server.base), Some("plain")),
    ] {
        let mut params = vec![
            ("response_type", "code".to_owned()),
            ("client_id", client_id.clone()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("scope", "openid".to_owned()),
            ("state", "s1".to_owned()),
            ("aud", aud),
        ];
        if let Some(m) = method {
            params.push(("code_challenge", flow.challenge.clone().unwrap()));
            params.push(("code_challenge_method", m.to_owned()));
        }
        let r = browser
            .get(server.url("/auth/authorize"))
            .query(&params)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let q = query_of(r.headers()["location"].to_str().unwrap());
        assert_eq!(q["error"], "invalid_request");
        assert_eq!(q["state"], "s1");
        assert!(!q.contains_key("code"));
    }
    // An unregistered redirect URI is never redirected to (open redirect): an error page.
    let r = browser
        .get(server.url("/auth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", "https://evil.example/cb"),
            ("state", "s"),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
}

#[tokio::test]
async fn consent_without_the_csrf_token_is_refused() {
    let server = Server::start();
    let redirect_uri = "https://app.example/cb";
    let app = register(&server, json!({"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", "scope": SCOPES})).await;
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    add_user(&server, "carol", &["--patient", "p3"]).await;
    wait_for_user(&server, &client_id, redirect_uri, "carol").await;
    let (_, challenge) = pkce();
    let browser = no_redirects(&server);
    let page = browser
        .get(server.url("/auth/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", "openid patient/Patient.rs"),
            ("state", "s"),
            ("aud", &format!("{}/fhir/r4", server.base)),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let txn = hidden(&page, "txn");
    let r = browser
        .post(server.url("/auth/login"))
        .form(&[
            ("txn", txn.as_str()),
            ("csrf", hidden(&page, "csrf").as_str()),
            ("username", "carol"),
            ("password", "password-123"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let r = browser
        .post(server.url("/auth/consent"))
        .header("cookie", &cookie)
        .form(&[
            ("txn", txn.as_str()),
            ("csrf", "forged"),
            ("decision", "allow"),
            ("scope", "patient/Patient.rs"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());
}

fn client_keys(alg: Algorithm) -> (EncodingKey, Value, String) {
    let kid = format!("k-{}", uuid::Uuid::new_v4().simple());
    let (pair, key) = match alg {
        Algorithm::ES384 => {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
            let key = EncodingKey::from_ec_der(&pair.serialize_der());
            (pair, key)
        }
        _ => {
            let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
            // PKCS#8 -> PKCS#1: the OCTET STRING at the end of PrivateKeyInfo.
            let der = pair.serialize_der();
            let inner = &der[der.len() - pkcs1_len(&der)..];
            let key = EncodingKey::from_rsa_der(inner);
            (pair, key)
        }
    };
    let _ = pair;
    let mut jwk = Jwk::from_encoding_key(&key, alg).unwrap();
    jwk.common.key_id = Some(kid.clone());
    (key, json!({"keys": [jwk]}), kid)
}

/// Length of the trailing RSAPrivateKey in a PKCS#8 RSA key (its SEQUENCE header says).
fn pkcs1_len(der: &[u8]) -> usize {
    // Find the last 0x04 OCTET STRING whose content starts with a SEQUENCE and runs to the end.
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

fn assertion(
    key: &EncodingKey,
    alg: Algorithm,
    kid: &str,
    client_id: &str,
    aud: &str,
    exp_in: i64,
    jti: &str,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": aud, "exp": now + exp_in, "jti": jti}),
        key,
    )
    .unwrap()
}

#[tokio::test]
async fn backend_services_get_tokens_with_signed_assertions_once_per_jti() {
    let server = Server::start();
    let token_url = format!("{}/auth/token", server.base);
    for alg in [Algorithm::RS384, Algorithm::ES384] {
        let (key, jwks, kid) = client_keys(alg);
        let app = register(&server, json!({
            "client_name": "Backend", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks": jwks, "scope": "system/*.rs system/Patient.read",
        })).await;
        let client_id = app["client_id"].as_str().unwrap().to_owned();
        let jti = uuid::Uuid::new_v4().to_string();
        let good = assertion(&key, alg, &kid, &client_id, &token_url, 240, &jti);
        let form = |a: &str, kind: &str| {
            vec![
                ("grant_type".to_owned(), "client_credentials".to_owned()),
                ("scope".to_owned(), "system/*.rs".to_owned()),
                ("client_assertion_type".to_owned(), kind.to_owned()),
                ("client_assertion".to_owned(), a.to_owned()),
            ]
        };
        let bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
        let r = server
            .client()
            .post(server.url("/auth/token"))
            .form(&form(&good, bearer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{alg:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "system/*.rs");
        assert!(body["expires_in"].is_number());
        // The same jti again: refused.
        let r = server
            .client()
            .post(server.url("/auth/token"))
            .form(&form(&good, bearer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        // Wrong assertion type, too long an expiry, wrong audience, garbage.
        let r = server
            .client()
            .post(server.url("/auth/token"))
            .form(&form(
                &assertion(&key, alg, &kid, &client_id, &token_url, 60, "j2"),
                "urn:wrong",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        for bad in [
            assertion(&key, alg, &kid, &client_id, &token_url, 3600, "j3"),
            assertion(
                &key,
                alg,
                &kid,
                &client_id,
                "https://elsewhere/token",
                60,
                "j4",
            ),
            assertion(&key, alg, "other-kid", &client_id, &token_url, 60, "j5"),
            "not.a.jwt".to_owned(),
        ] {
            let r = server
                .client()
                .post(server.url("/auth/token"))
                .form(&form(&bad, bearer))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"], "invalid_client");
        }
    }
    let r = server
        .client()
        .post(server.url("/auth/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn forged_tokens_are_inactive() {
    let server = Server::start();
    let (key, jwks, kid) = client_keys(Algorithm::RS384);
    let app = register(&server, json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks, "scope": "system/*.rs"})).await;
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let token_url = format!("{}/auth/token", server.base);
    let issue = |jti: &str| {
        assertion(
            &key,
            Algorithm::RS384,
            &kid,
            &client_id,
            &token_url,
            60,
            jti,
        )
    };
    let form = |a: String| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            (
                "client_assertion_type".to_owned(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion".to_owned(), a),
        ]
    };
    let body: Value = server
        .client()
        .post(server.url("/auth/token"))
        .form(&form(issue("a")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = body["access_token"].as_str().unwrap().to_owned();
    let ask = |token: String| {
        let server = &server;
        let a = issue(&uuid::Uuid::new_v4().to_string());
        async move {
            let mut f = form(a);
            f.push(("token".to_owned(), token));
            server
                .client()
                .post(server.url("/auth/introspect"))
                .form(&f)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(ask(access.clone()).await["active"], true);
    let parts: Vec<&str> = access.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["scope"] = json!("system/*.cruds");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    // HS256 keyed with the server's public key material.
    let jwks: Value = server
        .client()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = jwks["keys"][0]["kid"].as_str().map(str::to_owned);
    let original: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let hs256 = jsonwebtoken::encode(
        &hs,
        &original,
        &EncodingKey::from_secret(n.as_bytes()).unwrap(),
    )
    .unwrap();
    let mut expired = original.clone();
    expired["exp"] = json!(1);
    let mut wrong_aud = original.clone();
    wrong_aud["aud"] = json!("https://other.example/fhir");
    let mut foreign = Header::new(Algorithm::RS384);
    foreign.kid = Some(kid.clone());
    for forged in [
        tampered,
        none,
        hs256,
        jsonwebtoken::encode(&foreign, &expired, &key).unwrap(),
        jsonwebtoken::encode(&foreign, &wrong_aud, &key).unwrap(),
        jsonwebtoken::encode(&foreign, &original, &key).unwrap(),
    ] {
        assert_eq!(ask(forged).await, json!({"active": false}));
    }
}

#[tokio::test]
async fn operators_manage_apps_from_the_cli_while_the_server_runs() {
    let server = Server::start();
    let out = cli(
        &server,
        &[
            "apps",
            "register",
            "--name",
            "CLI app",
            "--redirect-uri",
            "https://cli.example/cb",
            "--scope",
            "openid patient/*.rs",
        ],
    );
    let body: Value = serde_json::from_str(&out).unwrap();
    let client_id = body["client_id"].as_str().unwrap().to_owned();
    let secret = body["client_secret"].as_str().unwrap().to_owned();
    let list = cli(&server, &["apps", "list"]);
    assert!(list.contains(&client_id) && list.contains("approved"));
    assert!(!list.contains(&secret));
    cli(&server, &["apps", "suspend", &client_id]);
    assert!(cli(&server, &["apps", "list"]).contains("suspended"));
    let rotated: Value =
        serde_json::from_str(&cli(&server, &["apps", "rotate-secret", &client_id])).unwrap();
    assert_ne!(rotated["client_secret"], json!(secret));
    // The log holds no secret.
    let log = cli(&server, &["log", "read", &format!("app-{client_id}")]);
    assert!(!log.contains(&secret) && !log.contains(rotated["client_secret"].as_str().unwrap()));
}

#[tokio::test]
async fn ehr_launch_carries_patient_encounter_and_style_into_the_token() {
    let server = Server::start();
    let redirect_uri = "https://ehr-app.example/cb";
    let scope = "launch openid fhirUser offline_access patient/Patient.rs";
    let app = register(&server, json!({
        "client_name": "EHR app", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "client_secret_post",
        "scope": scope, "launch_uri": "https://ehr-app.example/launch",
    })).await;
    let client_id = app["client_id"].as_str().unwrap().to_owned();
    let secret = app["client_secret"].as_str().unwrap().to_owned();
    add_user(&server, "drsmith", &["--practitioner", "pr1"]).await;
    wait_for_user(&server, &client_id, redirect_uri, "drsmith").await;
    // Patients may not create launches; the practitioner may.
    let r = server
        .client()
        .post(server.url("/auth/launch"))
        .basic_auth("drsmith", Some("password-123"))
        .form(&[
            ("client_id", client_id.as_str()),
            ("patient", "p5"),
            ("encounter", "e9"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let launch: Value = r.json().await.unwrap();
    let launch_url = url::Url::parse(launch["launch_url"].as_str().unwrap()).unwrap();
    let q: HashMap<String, String> = launch_url.query_pairs().into_owned().collect();
    assert_eq!(q["iss"], format!("{}/fhir/r4", server.base));
    let launch_id = q["launch"].clone();

    let (verifier, challenge) = pkce();
    let browser = no_redirects(&server);
    // POST to authorize works as GET does (authorize-post).
    let page = browser
        .post(server.url("/auth/authorize"))
        .form(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", "ehr"),
            ("aud", &q["iss"]),
            ("launch", &launch_id),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (txn, csrf) = (hidden(&page, "txn"), hidden(&page, "csrf"));
    let r = browser
        .post(server.url("/auth/login"))
        .form(&[
            ("txn", txn.as_str()),
            ("csrf", csrf.as_str()),
            ("username", "drsmith"),
            ("password", "password-123"),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut form = vec![
        ("txn", txn.as_str()),
        ("csrf", csrf.as_str()),
        ("decision", "allow"),
    ];
    form.extend(scope.split(' ').map(|s| ("scope", s)));
    let r = browser
        .post(server.url("/auth/consent"))
        .header("cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    let back = query_of(r.headers()["location"].to_str().unwrap());
    let (status, body, _) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &back["code"]),
            ("redirect_uri", redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["patient"], "p5");
    assert_eq!(body["encounter"], "e9");
    assert_eq!(body["scope"], scope);
    assert!(body["need_patient_banner"].is_boolean());
    assert!(body["fhirContext"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.is_object()));
    let style = server
        .client()
        .get(body["smart_style_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(style.status(), 200);
    style.json::<Value>().await.unwrap();
    // The practitioner's grants page lists the app, and revoking it there ends the refresh token.
    let page = browser
        .get(server.url("/auth/grants"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("EHR app"), "{page}");
    let r = browser
        .post(server.url("/auth/grants/revoke"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", hidden(&page, "csrf").as_str()),
            ("grant_id", hidden(&page, "grant_id").as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let (status, _, _) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ],
        None,
    )
    .await;
    assert_eq!(status, 400);
}

/// A registered backend-services client: its key, kid and client id.
async fn backend_client(server: &Server, alg: Algorithm) -> (EncodingKey, String, String) {
    let (key, jwks, kid) = client_keys(alg);
    let app = register(server, json!({
        "client_name": "Backend", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
        "jwks": jwks, "scope": "system/*.rs",
    }))
    .await;
    (key, kid, app["client_id"].as_str().unwrap().to_owned())
}

/// A client_credentials request with a fresh assertion: (status, body, headers).
async fn backend_token_request(
    server: &Server,
    key: &EncodingKey,
    alg: Algorithm,
    kid: &str,
    client_id: &str,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let token_url = format!("{}/auth/token", server.base);
    let jti = uuid::Uuid::new_v4().to_string();
    let a = assertion(key, alg, kid, client_id, &token_url, 120, &jti);
    token(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", &a),
        ],
        None,
    )
    .await
}

async fn jwks_kids(server: &Server) -> Vec<String> {
    let jwks: Value = server
        .client()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

async fn fhir_status(server: &Server, token: &str) -> u16 {
    server
        .client()
        .get(server.url("/fhir/r4/Patient?_count=1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn rotated_keys_sign_new_tokens_while_old_tokens_stay_valid_until_they_expire() {
    let temp = tempfile::tempdir().unwrap();
    let lifetime_s = 6;
    let server = Server::start_in(
        temp.path(),
        &[],
        &[("SPHERE_SMART_ACCESS_TOKEN_SECONDS", "6")],
    );
    let (key, kid, client_id) = backend_client(&server, Algorithm::ES384).await;
    let (status, body, _) =
        backend_token_request(&server, &key, Algorithm::ES384, &kid, &client_id).await;
    assert_eq!(status, 200, "{body}");
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let old_kid = kid_of(&old_token);
    let before = jwks_kids(&server).await;
    assert_eq!(before.len(), 2);
    assert!(before.contains(&old_kid));

    let rotated: Value = serde_json::from_str(&cli(&server, &["keys", "rotate"])).unwrap();
    // Access tokens are ES384 with the EC key; id_tokens RS256 with the RSA key.
    let new_kid = rotated["ec_kid"].as_str().unwrap().to_owned();
    let new_rsa_kid = rotated["rsa_kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert!(!before.contains(&new_rsa_kid));
    assert!(rotated["retired_kids"]
        .as_array()
        .unwrap()
        .contains(&json!(old_kid)));
    // The running server picks the rotation up within half a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let during = loop {
        let kids = jwks_kids(&server).await;
        if kids.contains(&new_kid) {
            break kids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(during.len(), 4, "{during:?}");
    assert!(during.contains(&old_kid));
    // A token signed before the rotation still works; new tokens carry the new kid.
    assert_eq!(fhir_status(&server, &old_token).await, 200);
    let (status, body, _) =
        backend_token_request(&server, &key, Algorithm::ES384, &kid, &client_id).await;
    assert_eq!(status, 200, "{body}");
    let new_token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(kid_of(&new_token), new_kid);
    assert_eq!(fhir_status(&server, &new_token).await, 200);
    // Both verify against the published JWKS.
    let jwks: jsonwebtoken::jwk::JwkSet = server
        .client()
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for t in [&old_token, &new_token] {
        let header = jsonwebtoken::decode_header(t).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(t, &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(), &v)
            .unwrap();
    }
    // The log records the rotation with public keys only.
    let log = cli(&server, &["log", "read", "signingkeys-server", "--json"]);
    let event: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(event["data"]["ec_kid"], json!(new_kid));
    assert_eq!(event["data"]["rsa_kid"], json!(new_rsa_kid));
    for k in event["data"]["jwks"]["keys"].as_array().unwrap() {
        assert!(
            k.get("d").is_none() && k.get("p").is_none(),
            "a private key part in the log"
        );
    }
    // Once every token the old keys signed has expired, they drop out of the JWKS.
    tokio::time::sleep(std::time::Duration::from_secs(lifetime_s)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let kids = jwks_kids(&server).await;
        if !kids.contains(&old_kid) {
            assert_eq!(kids.len(), 2, "{kids:?}");
            assert!(kids.contains(&new_kid));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old key still published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(fhir_status(&server, &old_token).await, 401);
}

/// A tiny HTTPS server for a client's `jwks_uri`: serves `body` (or fails with `status`),
/// counts requests. Its self-signed certificate is written to `ca_path` for the server to
/// trust (`smart.jwks_ca_file`).
struct JwksHost {
    url: String,
    body: std::sync::Arc<std::sync::Mutex<(u16, String)>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn jwks_host(ca_path: &std::path::Path) -> JwksHost {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(ca_path, certified.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(std::sync::Mutex::new((200u16, String::new())));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (b, h) = (body.clone(), hits.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, b, h) = (acceptor.clone(), b.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let (status, text) = b.lock().unwrap().clone();
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    JwksHost {
        url: format!("https://localhost:{port}/jwks.json"),
        body,
        hits,
    }
}

#[tokio::test]
async fn backend_keys_from_a_jwks_uri_are_fetched_cached_and_refetched_for_a_new_kid() {
    use std::sync::atomic::Ordering;
    let temp = tempfile::tempdir().unwrap();
    let ca = temp.path().join("jwks-ca.pem");
    let host = jwks_host(&ca).await;
    let data = temp.path().join("data");
    let server = Server::start_in(
        &data,
        &[],
        &[
            ("SPHERE_SMART_JWKS_CA_FILE", ca.to_str().unwrap()),
            ("SPHERE_SMART_JWKS_REFETCH_SECONDS", "1"),
        ],
    );
    let alg = Algorithm::ES384;
    let (key1, jwks1, kid1) = client_keys(alg);
    let (key2, jwks2, kid2) = client_keys(alg);
    *host.body.lock().unwrap() = (200, jwks1.to_string());

    // Only https jwks_uris, and not together with jwks.
    for bad in [
        json!({"jwks_uri": "http://localhost/jwks.json"}),
        json!({"jwks_uri": "not a url"}),
        json!({"jwks_uri": host.url, "jwks": jwks1}),
    ] {
        let mut body = json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt", "scope": "system/*.rs"});
        body.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        let r = server
            .client()
            .post(server.url("/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            "invalid_client_metadata"
        );
    }
    let app = register(&server, json!({
        "client_name": "Backend by jwks_uri", "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt", "jwks_uri": host.url, "scope": "system/*.rs",
    }))
    .await;
    assert_eq!(app["jwks_uri"], json!(host.url));
    let client_id = app["client_id"].as_str().unwrap().to_owned();

    // Fetched once, then served from the cache.
    for _ in 0..3 {
        let (status, body, _) = backend_token_request(&server, &key1, alg, &kid1, &client_id).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(host.hits.load(Ordering::SeqCst), 1);

    // The client adds a key: an assertion naming it triggers one refetch.
    let mut both = jwks1.clone();
    both["keys"]
        .as_array_mut()
        .unwrap()
        .push(jwks2["keys"][0].clone());
    *host.body.lock().unwrap() = (200, both.to_string());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body, _) = backend_token_request(&server, &key2, alg, &kid2, &client_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(host.hits.load(Ordering::SeqCst), 2);

    // Made-up kids: refused, and they cannot make the server fetch in a loop.
    let (rogue, _, _) = client_keys(alg);
    for i in 0..5 {
        let (status, body, _) =
            backend_token_request(&server, &rogue, alg, &format!("rogue-{i}"), &client_id).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
    }
    assert!(host.hits.load(Ordering::SeqCst) <= 3);

    // The host fails: a clear invalid_client once a fetch is needed.
    *host.body.lock().unwrap() = (500, "oops".into());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body, _) =
        backend_token_request(&server, &rogue, alg, "rogue-x", &client_id).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("jwks_uri could not be used: it answered HTTP 500"),
        "{body}"
    );
    // An unreachable jwks_uri, and one that does not serve a JWKS.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (uri, why) in [
        (
            format!("https://localhost:{closed}/jwks.json"),
            "could not be reached",
        ),
        (host.url.clone(), "not a JWKS"),
    ] {
        *host.body.lock().unwrap() = (200, "{\"not\": \"keys\"}".into());
        let app = register(&server, json!({
            "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": uri, "scope": "system/*.rs",
        }))
        .await;
        let id = app["client_id"].as_str().unwrap();
        let (status, body, _) = backend_token_request(&server, &key1, alg, &kid1, id).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
        assert!(
            body["error_description"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
}

async fn sign_in(server: &Server, username: &str, password: &str) -> (u16, String, Option<String>) {
    let r = no_redirects(server)
        .post(server.url("/auth/login"))
        .form(&[
            ("txn", ""),
            ("csrf", ""),
            ("username", username),
            ("password", password),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, r.text().await.unwrap(), retry)
}

#[tokio::test]
async fn repeated_failed_sign_ins_lock_out_that_username_for_a_while_only() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        temp.path(),
        &[],
        &[
            ("SPHERE_SMART_LOGIN_MAX_FAILURES", "3"),
            ("SPHERE_SMART_LOGIN_LOCKOUT_SECONDS", "3"),
        ],
    );
    add_user(&server, "alice", &["--patient", "p1"]).await;
    add_user(&server, "bob", &["--patient", "p2"]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while sign_in(&server, "bob", "password-123").await.0 != 303 {
        assert!(std::time::Instant::now() < deadline, "users not visible");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for _ in 0..2 {
        let (status, page, _) = sign_in(&server, "alice", "wrong-password").await;
        assert_eq!(status, 401);
        assert!(page.contains("The username or password is not right."));
    }
    let (status, page, retry) = sign_in(&server, "alice", "wrong-password").await;
    assert_eq!(status, 429);
    assert!(page.contains("Too many failed sign-ins"), "{page}");
    assert!(page.contains("try again in 3 seconds"), "{page}");
    assert_eq!(retry.as_deref(), Some("3"));
    // Locked: even the right password is refused (guessing stops paying off), with a page
    // that still offers the form.
    let (status, page, _) = sign_in(&server, "alice", "password-123").await;
    assert_eq!(status, 429);
    assert!(page.contains("name=\"password\""));
    // Another user signs in as usual.
    assert_eq!(sign_in(&server, "bob", "password-123").await.0, 303);
    // After the lockout, alice's right password works again.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(sign_in(&server, "alice", "password-123").await.0, 303);
}

#[tokio::test]
async fn a_client_over_its_rate_limit_gets_429_with_retry_after_and_others_do_not() {
    let temp = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        temp.path(),
        &[],
        &[
            ("SPHERE_SMART_RATE_LIMIT_PER_SECOND", "1"),
            ("SPHERE_SMART_RATE_LIMIT_BURST", "3"),
        ],
    );
    let alg = Algorithm::ES384;
    let (key_a, kid_a, busy) = backend_client(&server, alg).await;
    let (key_b, kid_b, quiet) = backend_client(&server, alg).await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let (status, body, headers) =
            backend_token_request(&server, &key_a, alg, &kid_a, &busy).await;
        statuses.push(status);
        if status == 429 {
            limited = Some((body, headers));
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    let (body, headers) = limited.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert!(body["error_description"].is_string());
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(headers["cache-control"], "no-store");
    // Another client has its own allowance.
    let (status, body, _) = backend_token_request(&server, &key_b, alg, &kid_b, &quiet).await;
    assert_eq!(status, 200, "{body}");
    // The busy client's allowance comes back with time.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let (status, body, _) = backend_token_request(&server, &key_a, alg, &kid_a, &busy).await;
    assert_eq!(status, 200, "{body}");

    // The FHIR API limits the same client the same way: 429, Retry-After, OperationOutcome,
    // for reads and searches alike.
    let token = body["access_token"].as_str().unwrap().to_owned();
    for path in ["/fhir/r4/Patient/nobody", "/fhir/r4/Patient?family=x"] {
        let mut throttled = None;
        for _ in 0..8 {
            let r = server
                .client()
                .get(server.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            if r.status() == 429 {
                throttled = Some(r);
                break;
            }
        }
        let r = throttled.unwrap_or_else(|| panic!("{path} was never limited"));
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=2).contains(&retry), "{retry}");
        let outcome: serde_json::Value = r.json().await.unwrap();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["code"], "throttled");
        tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    }
}
