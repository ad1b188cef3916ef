//! Demo apps and users for `sphere serve --demo`: one of each client kind SMART knows, and
//! users linked to the demo population's Patient and Practitioner.

use crate::app::App;
use crate::smart::register::{register, ClientMetadata, RegisterError};
use crate::smart::users::{add_user, UserError};

/// What the demo prints so that a person (or a test kit) can use it.
#[derive(Debug, Clone)]
pub struct DemoCredentials {
    pub public_client_id: String,
    pub confidential_client_id: String,
    pub confidential_client_secret: String,
    pub asymmetric_client_id: String,
    pub backend_client_id: String,
    pub patient_username: String,
    pub practitioner_username: String,
    pub password: String,
    pub redirect_uri: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("demo client keys: {0}")]
    Keys(String),
}

pub const DEMO_REDIRECT_URI: &str = "http://localhost:4000/callback";
pub const DEMO_PASSWORD: &str = "demo-password-1";
const SCOPES: &str = "launch launch/patient launch/encounter openid fhirUser profile offline_access online_access patient/*.rs patient/*.read user/*.rs user/*.read patient/*.cruds user/*.cruds";
const SYSTEM_SCOPES: &str = "system/*.rs system/*.read";

/// Registers the demo apps and users, linked to `patient_id` and `practitioner_id`.
/// `client_jwks`: public keys for the asymmetric and backend clients (private_key_jwt).
pub async fn register_demo(
    app: &App,
    patient_id: &str,
    practitioner_id: &str,
    client_jwks: serde_json::Value,
) -> Result<DemoCredentials, DemoError> {
    let log = app.log.as_ref();
    let code_app = |name: &str, method: &str| ClientMetadata {
        client_name: Some(name.into()),
        redirect_uris: vec![DEMO_REDIRECT_URI.into()],
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        token_endpoint_auth_method: Some(method.into()),
        scope: Some(SCOPES.into()),
        jwks: None,
        jwks_uri: None,
        launch_uri: Some("http://localhost:4000/launch".into()),
    };
    let public = register(log, code_app("Demo public app", "none"), true).await?;
    let confidential = register(
        log,
        code_app("Demo confidential app", "client_secret_basic"),
        true,
    )
    .await?;
    let mut asymmetric_meta = code_app("Demo asymmetric app", "private_key_jwt");
    asymmetric_meta.jwks = Some(client_jwks.clone());
    let asymmetric = register(log, asymmetric_meta, true).await?;
    let backend = register(
        log,
        ClientMetadata {
            client_name: Some("Demo backend service".into()),
            grant_types: vec!["client_credentials".into()],
            token_endpoint_auth_method: Some("private_key_jwt".into()),
            scope: Some(SYSTEM_SCOPES.into()),
            jwks: Some(client_jwks),
            ..ClientMetadata::default()
        },
        true,
    )
    .await?;
    let patient_username = "demo.patient".to_owned();
    let practitioner_username = "demo.practitioner".to_owned();
    for (user, patient, practitioner) in [
        (&patient_username, Some(patient_id), None),
        (&practitioner_username, None, Some(practitioner_id)),
    ] {
        match add_user(log, user, DEMO_PASSWORD, patient, practitioner).await {
            Ok(_) | Err(UserError::Exists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(position) = app.log.head().await.ok().flatten() {
        let _ = app.smart.wait_for(position).await;
    }
    Ok(DemoCredentials {
        public_client_id: public.registration.client_id,
        confidential_client_id: confidential.registration.client_id,
        confidential_client_secret: confidential.client_secret.unwrap_or_default(),
        asymmetric_client_id: asymmetric.registration.client_id,
        backend_client_id: backend.registration.client_id,
        patient_username,
        practitioner_username,
        password: DEMO_PASSWORD.into(),
        redirect_uri: DEMO_REDIRECT_URI.into(),
    })
}
