//! Shared by the FHIR API tests and the load generator: a client holding a backend-services
//! token from the server's own token endpoint (the FHIR API refuses anonymous requests).
#![allow(dead_code)]

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use super::support::Server;

/// Length of the trailing RSAPrivateKey in a PKCS#8 RSA key.
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

/// A backend-services token (`system/*.cruds`) from the server's own token endpoint, and a
/// client that sends it.
pub async fn authorized_client(server: &Server) -> Client {
    authorized_client_builder(server)
        .await
        .build()
        .expect("client")
}

/// A client builder that sends a backend-services token (`system/*.cruds`).
pub async fn authorized_client_builder(server: &Server) -> reqwest::ClientBuilder {
    backend_client_builder(server, "system/*.cruds", "fhir api tests")
        .await
        .0
}

/// A client builder that sends a backend-services token with `scope`, registered as
/// `client_name`, and the client id it got.
pub async fn backend_client_builder(
    server: &Server,
    scope: &str,
    client_name: &str,
) -> (reqwest::ClientBuilder, String) {
    let kid = format!("k-{}", uuid::Uuid::new_v4().simple());
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let der = pair.serialize_der();
    let key = EncodingKey::from_rsa_der(&der[der.len() - pkcs1_len(&der)..]);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS384).unwrap();
    jwk.common.key_id = Some(kid.clone());
    let app: Value = server
        .client()
        .post(server.url("/auth/register"))
        .json(&json!({"client_name": client_name, "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [jwk]}, "scope": scope}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = app["client_id"].as_str().expect("registered").to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut header = Header::new(Algorithm::RS384);
    header.kid = Some(kid);
    let token_url = format!("{}/auth/token", server.base);
    let assertion = jsonwebtoken::encode(
        &header,
        &json!({"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240,
            "jti": uuid::Uuid::new_v4().to_string()}),
        &key,
    )
    .unwrap();
    let r = server
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
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    (server.client_builder().default_headers(headers), client_id)
}
