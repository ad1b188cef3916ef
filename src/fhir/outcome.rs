//! Errors of the FHIR API and the OperationOutcome each one answers with.
//!
//! Messages never carry PHI: they name resource types, ids, versions and element paths, never
//! element values or request bodies.

use serde_json::{json, Value};
use sphere_domain::fhir::Issue;
use warp::http::StatusCode;

use super::access::Denied;
use crate::eventlog::EventLogError;

/// Everything that can go wrong answering a FHIR request, with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    #[error("{0}")]
    BadRequest(String),
    /// The resource failed validation: the issues become the OperationOutcome.
    #[error("the resource is not valid")]
    Invalid(Vec<Issue>),
    #[error("{0}")]
    NotFound(String),
    #[error("{resource_type}/{id} was deleted")]
    Gone {
        resource_type: String,
        id: String,
        version: u64,
    },
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<EventLogError> for FhirError {
    fn from(e: EventLogError) -> Self {
        match e {
            EventLogError::WrongExpectedVersion { stream, .. } => FhirError::Conflict(format!(
                "{} was changed by another request; read it again and retry",
                stream.replacen('-', "/", 1)
            )),
            EventLogError::Unavailable(_) | EventLogError::Closed => {
                tracing::error!(error = %e, "event log unavailable");
                FhirError::Unavailable("the event log is unavailable; retry later".into())
            }
            other => {
                // The log's text names streams and positions, never resource content.
                tracing::error!(error = %other, "event log error");
                FhirError::Internal("the event log failed".into())
            }
        }
    }
}

impl FhirError {
    pub fn status(&self) -> StatusCode {
        match self {
            FhirError::BadRequest(_) | FhirError::Invalid(_) => StatusCode::BAD_REQUEST,
            FhirError::NotFound(_) => StatusCode::NOT_FOUND,
            FhirError::Gone { .. } => StatusCode::GONE,
            FhirError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            FhirError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            FhirError::Conflict(_) => StatusCode::CONFLICT,
            FhirError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            FhirError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FhirError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            FhirError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            FhirError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            FhirError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            FhirError::Denied(Denied::Unauthenticated(_)) => StatusCode::UNAUTHORIZED,
            FhirError::Denied(Denied::Forbidden(_)) => StatusCode::FORBIDDEN,
            FhirError::Denied(Denied::RateLimited(_)) => StatusCode::TOO_MANY_REQUESTS,
            FhirError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The FHIR issue-type code for the single issue of this error.
    fn issue_code(&self) -> &'static str {
        match self {
            FhirError::BadRequest(_) => "invalid",
            FhirError::Invalid(_) => "invalid",
            FhirError::NotFound(_) => "not-found",
            FhirError::Gone { .. } => "deleted",
            FhirError::MethodNotAllowed(_) | FhirError::NotImplemented(_) => "not-supported",
            FhirError::NotAcceptable(_) | FhirError::UnsupportedMediaType(_) => "not-supported",
            FhirError::Conflict(_) | FhirError::PreconditionFailed(_) => "conflict",
            FhirError::PayloadTooLarge { .. } => "too-costly",
            FhirError::Unprocessable(_) => "processing",
            FhirError::Unavailable(_) => "transient",
            FhirError::Denied(Denied::Unauthenticated(_)) => "login",
            FhirError::Denied(Denied::Forbidden(_)) => "forbidden",
            FhirError::Denied(Denied::RateLimited(_)) => "throttled",
            FhirError::Internal(_) => "exception",
        }
    }

    /// The OperationOutcome this error answers with.
    pub fn operation_outcome(&self) -> Value {
        match self {
            FhirError::Invalid(issues) => sphere_domain::fhir::operation_outcome(issues),
            other => outcome("error", other.issue_code(), &other.to_string(), None),
        }
    }

    /// The same error with every issue location prefixed by `prefix` (a Bundle entry's path),
    /// so a transaction's OperationOutcome points into the Bundle.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            FhirError::Invalid(issues) => FhirError::Invalid(
                issues
                    .into_iter()
                    .map(|mut i| {
                        i.expression = format!("{prefix}.{}", i.expression);
                        i
                    })
                    .collect(),
            ),
            FhirError::BadRequest(m) => FhirError::BadRequest(format!("{prefix}: {m}")),
            FhirError::NotFound(m) => FhirError::NotFound(format!("{prefix}: {m}")),
            FhirError::Conflict(m) => FhirError::Conflict(format!("{prefix}: {m}")),
            FhirError::PreconditionFailed(m) => {
                FhirError::PreconditionFailed(format!("{prefix}: {m}"))
            }
            FhirError::Unprocessable(m) => FhirError::Unprocessable(format!("{prefix}: {m}")),
            other => other,
        }
    }
}

/// An OperationOutcome with one issue.
pub fn outcome(severity: &str, code: &str, diagnostics: &str, expression: Option<&str>) -> Value {
    let mut issue = json!({"severity": severity, "code": code, "diagnostics": diagnostics});
    if let Some(e) = expression {
        issue["expression"] = json!([e]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}
