//! `sphere serve --demo`: on an empty data directory, a synthetic population (imported through
//! the API's write path), demo apps and users; on every start, what a person needs to try it.
//!
//! The demo's credentials are kept in `DATA/demo/` (readable by the owner only) so that a
//! restart with `--demo` prints them again: the event log itself holds only hashes of secrets.

use std::path::{Path, PathBuf};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sphere_domain::synthetic::{self, GenerateConfig};

use crate::app::App;
use crate::import::{self, Options, Target};
use crate::smart::demo::{register_demo, DemoCredentials};

/// Patients in the demo population.
pub const DEMO_PATIENTS: u32 = 50;
/// The `kid` of the demo clients' signing key.
pub const DEMO_KEY_ID: &str = "demo-key";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo files in {path}: {message}")]
    File { path: String, message: String },
    #[error("importing the demo population failed: {0}")]
    Import(#[from] import::ImportError),
    #[error("the demo population was not accepted: {0}")]
    Rejected(String),
    #[error(transparent)]
    Smart(#[from] crate::smart::demo::DemoError),
    #[error("the event log failed: {0}")]
    Log(#[from] crate::eventlog::EventLogError),
    #[error("the projections did not catch up with the demo population: {0}")]
    Projections(#[from] crate::projection::WaitError),
}

/// Everything the demo prints, as kept in `DATA/demo/credentials.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Demo {
    pub patient_id: String,
    pub practitioner_id: String,
    pub all_patients_group: String,
    pub resources: u64,
    pub public_client_id: String,
    pub confidential_client_id: String,
    pub confidential_client_secret: String,
    pub asymmetric_client_id: String,
    pub backend_client_id: String,
    pub patient_username: String,
    pub practitioner_username: String,
    pub password: String,
    pub redirect_uri: String,
    /// PKCS#8 PEM of the asymmetric and backend clients' ES384 key.
    pub client_key_file: PathBuf,
}

pub fn demo_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("demo")
}

/// Loads the demo into an empty log, or finds the one loaded before. None when the log holds
/// data that is not a demo (then `--demo` adds nothing).
pub async fn prepare(app: &App) -> Result<Option<Demo>, DemoError> {
    let dir = demo_dir(&app.config.data_dir);
    let saved = dir.join("credentials.json");
    if let Ok(bytes) = std::fs::read(&saved) {
        let demo = serde_json::from_slice(&bytes).map_err(|e| file_error(&saved, e))?;
        return Ok(Some(demo));
    }
    if app.log.head().await?.is_some() {
        return Ok(None);
    }
    let config = GenerateConfig {
        patients: DEMO_PATIENTS,
        ..GenerateConfig::default()
    };
    let mut resources = Vec::new();
    synthetic::generate(&config, &mut |r| resources.push(r));
    let practitioner_id = resources
        .iter()
        .find(|r| r["resourceType"] == "Practitioner")
        .and_then(|r| r["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let report = import::import_resources(
        Target::app(app),
        "demo population",
        resources,
        Options { strict: true },
    )
    .await?;
    if let Some(problem) = report.problems.first() {
        return Err(DemoError::Rejected(problem.to_string()));
    }
    if let Some(position) = report.last_position {
        for handle in app.projections() {
            handle
                .wait_for(position, std::time::Duration::from_secs(120))
                .await?;
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| file_error(&dir, e))?;
    let key_file = dir.join("client-key.pem");
    let jwks = client_key(&key_file)?;
    let patient_id = synthetic::patient_id(&config, 0);
    let credentials: DemoCredentials =
        register_demo(app, &patient_id, &practitioner_id, jwks).await?;
    let demo = Demo {
        patient_id,
        practitioner_id,
        all_patients_group: synthetic::all_patients_group_id(&config),
        resources: report.resources,
        public_client_id: credentials.public_client_id,
        confidential_client_id: credentials.confidential_client_id,
        confidential_client_secret: credentials.confidential_client_secret,
        asymmetric_client_id: credentials.asymmetric_client_id,
        backend_client_id: credentials.backend_client_id,
        patient_username: credentials.patient_username,
        practitioner_username: credentials.practitioner_username,
        password: credentials.password,
        redirect_uri: credentials.redirect_uri,
        client_key_file: key_file,
    };
    let json = serde_json::to_vec_pretty(&demo).map_err(|e| file_error(&saved, e))?;
    write_private(&saved, &json)?;
    Ok(Some(demo))
}

/// A new ES384 key for the demo's private_key_jwt clients, written as PKCS#8 PEM to `path`;
/// returns the public JWKS to register.
fn client_key(path: &Path) -> Result<Value, DemoError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .map_err(|e| file_error(path, e))?;
    let encoding = EncodingKey::from_ec_der(&pair.serialize_der());
    let mut jwk =
        Jwk::from_encoding_key(&encoding, Algorithm::ES384).map_err(|e| file_error(path, e))?;
    jwk.common.key_id = Some(DEMO_KEY_ID.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::ES384);
    write_private(path, pair.serialize_pem().as_bytes())?;
    serde_json::to_value(JwkSet { keys: vec![jwk] }).map_err(|e| file_error(path, e))
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    crate::private_file::write(path, bytes).map_err(|(p, e)| file_error(&p, e))
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> DemoError {
    DemoError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// What `serve --demo` prints: who to sign in as, the apps, and a walk through a real
/// authorization code flow ending in a FHIR read.
pub fn instructions(demo: &Demo, base: &str, fhir_base: &str, insecure: &str) -> String {
    let scope = "launch/patient openid fhirUser patient/*.rs";
    let authorize = format!(
        "{base}/auth/authorize?response_type=code&client_id={}&redirect_uri={}&scope={}&state=demo&aud={}",
        demo.confidential_client_id,
        encode(&demo.redirect_uri),
        encode(scope),
        encode(fhir_base),
    );
    format!(
        "\nDemo data: {resources} resources for {DEMO_PATIENTS} patients (Group/{group} holds them all).
  sign in as         {pu} / {pw}  (Patient/{pid})
                     {ru} / {pw}  (Practitioner/{prid})
  public app         client_id {public}  (PKCE S256), redirect_uri {redirect}
  confidential app   client_id {conf}  secret {secret}  (client_secret_basic)
  asymmetric app     client_id {asym}  (private_key_jwt, ES384 key {key}, kid {kid})
  backend service    client_id {backend}  (client_credentials, same key; system/*.rs)
  credentials kept in {dir}
Try it:
  1. open {authorize}
     sign in as {pu}, allow, and copy the code from the page it sends you to
  2. curl{insecure} -u {conf}:{secret} -d grant_type=authorization_code -d code=CODE --data-urlencode redirect_uri={redirect} {base}/auth/token
  3. curl{insecure} -H 'Authorization: Bearer ACCESS_TOKEN' {fhir_base}/Patient/{pid}
",
        resources = demo.resources,
        group = demo.all_patients_group,
        pu = demo.patient_username,
        ru = demo.practitioner_username,
        pw = demo.password,
        pid = demo.patient_id,
        prid = demo.practitioner_id,
        public = demo.public_client_id,
        redirect = demo.redirect_uri,
        conf = demo.confidential_client_id,
        secret = demo.confidential_client_secret,
        asym = demo.asymmetric_client_id,
        key = demo.client_key_file.display(),
        kid = DEMO_KEY_ID,
        backend = demo.backend_client_id,
        dir = demo
            .client_key_file
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    )
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
