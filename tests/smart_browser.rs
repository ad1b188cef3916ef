//! The login and consent pages in a real headless Chromium, driven over WebDriver
//! (chromedriver's W3C protocol spoken with the test's own HTTP client): sign in, untick a
//! resource type, pick a granular category, allow; the app receives a code whose token
//! carries exactly what was ticked. Needs `chromium` and `chromium-driver` (Debian).

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{sphere, Server};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

/// chromedriver runs in a process group of its own, and the whole group goes with the
/// driver: killing chromedriver alone left its Chromium processes running after every test
/// run (44 of them after one CI run, found when a benchmark ran slow).
impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
            {
                if r.status().is_success() {
                    return driver;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start");
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if !body.is_null() {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert!(v["value"]["error"].is_null(), "{path}: {v}");
        v["value"].clone()
    }
}

struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    _profile: tempfile::TempDir,
}

impl<'a> Browser<'a> {
    async fn open(driver: &'a Driver) -> Browser<'a> {
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            // The test server's certificate is self-signed for localhost.
            "--ignore-certificate-errors".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let v = driver
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}}),
            )
            .await;
        Browser {
            driver,
            session: v["sessionId"].as_str().unwrap().to_owned(),
            _profile: profile,
        }
    }
    async fn go(&self, url: &str) {
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}/url", self.session),
                json!({"url": url}),
            )
            .await;
    }
    async fn url(&self) -> String {
        self.driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{}/url", self.session),
                Value::Null,
            )
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }
    /// The URL once the browser has navigated to one starting with `prefix`.
    async fn url_starting_with(&self, prefix: &str) -> String {
        settled(|| self.url(), |url| url.starts_with(prefix)).await
    }
    async fn find(&self, css: &str) -> String {
        let v = self
            .driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}/element", self.session),
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }
    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}/element/{e}/value", self.session),
                json!({"text": text}),
            )
            .await;
    }
    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}/element/{e}/click", self.session),
                json!({}),
            )
            .await;
    }
    /// The page source once it contains `text`.
    async fn source_containing(&self, text: &str) -> String {
        settled(|| self.source(), |source| source.contains(text)).await
    }
    async fn source(&self) -> String {
        self.driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{}/source", self.session),
                Value::Null,
            )
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// What `read` gives once `done` accepts it (a click returns before the navigation it starts
/// has finished), or whatever it gives after 15 s.
async fn settled<F: std::future::Future<Output = String>>(
    read: impl Fn() -> F,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let value = read().await;
        if done(&value) || std::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_patient_signs_in_and_grants_part_of_the_request_in_chromium() {
    let server = Server::start();
    // The redirect lands on a page this server serves, so the browser has somewhere to go.
    let redirect_uri = server.url("/auth/smart-style.json");
    let scope = "launch/patient openid fhirUser patient/Patient.rs patient/Observation.rs patient/Condition.rs";
    let r = server.client().post(server.url("/auth/register")).json(&json!({
        "client_name": "Browser app", "redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none", "scope": scope,
    })).send().await.unwrap();
    let client_id = r.json::<Value>().await.unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = sphere()
        .args([
            "users",
            "add",
            "--username",
            "dana",
            "--password",
            "password-123",
            "--patient",
            "p7",
            "--data-dir",
        ])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let mut authorize = url::Url::parse(&server.url("/auth/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", scope)
        .append_pair("state", "browser-state")
        .append_pair("aud", &server.url("/fhir/r4"))
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");

    let driver = Driver::start().await;
    let browser = Browser::open(&driver).await;
    browser.go(authorize.as_str()).await;
    let login = browser.source().await;
    assert!(
        login.contains("<label for=\"username\">") && login.contains("<label for=\"password\">")
    );
    browser.type_into("#username", "dana").await;
    browser.type_into("#password", "password-123").await;
    browser.click("button[type=submit]").await;
    let consent = browser.source_containing("Browser app").await;
    assert!(consent.contains("Browser app"), "{consent}");
    // Untick Condition entirely; untick all Observations but choose laboratory only.
    browser.click("input[value='patient/Condition.rs']").await;
    browser.click("input[value='patient/Observation.rs']").await;
    let lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
    browser.click(&format!("input[value='{lab}']")).await;
    browser.click("button[value=allow]").await;
    let landed = url::Url::parse(&browser.url_starting_with(&redirect_uri).await).unwrap();
    assert!(landed.as_str().starts_with(&redirect_uri), "{landed}");
    let q: std::collections::HashMap<String, String> = landed.query_pairs().into_owned().collect();
    assert_eq!(q["state"], "browser-state");
    let r = server
        .client()
        .post(server.url("/auth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &q["code"]),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["scope"],
        format!("launch/patient openid fhirUser patient/Patient.rs {lab}")
    );
    assert_eq!(body["patient"], "p7");

    // A second authorization, denied: the app is told access_denied.
    let browser2 = Browser::open(&driver).await;
    browser2.go(authorize.as_str()).await;
    browser2.type_into("#username", "dana").await;
    browser2.type_into("#password", "password-123").await;
    browser2.click("button[type=submit]").await;
    browser2.click("button[value=deny]").await;
    // Wait for the redirect the click starts (reading the URL at once races the navigation).
    let landed = url::Url::parse(&browser2.url_starting_with(&redirect_uri).await).unwrap();
    let q: std::collections::HashMap<String, String> = landed.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "access_denied");
    assert!(!q.contains_key("code"));
}
