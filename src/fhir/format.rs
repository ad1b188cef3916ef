//! Response formats: `_format` / `Accept` negotiation (JSON only; XML is refused with 406),
//! `_pretty`, and turning a [`FhirResponse`] into an HTTP response with its FHIR headers.

use bytes::Bytes;
use serde_json::Value;
use warp::http::{HeaderMap, HeaderValue, StatusCode};

use super::outcome::FhirError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// How to print a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Format {
    pub pretty: bool,
}

/// Picks the response format from `_format` (which wins) or `Accept`. JSON in any of its
/// spellings is served; a request that only accepts XML (or anything else) gets 406.
pub fn negotiate(query: &[(String, String)], headers: &HeaderMap) -> Result<Format, FhirError> {
    let pretty = query
        .iter()
        .any(|(k, v)| k == "_pretty" && v.eq_ignore_ascii_case("true"));
    let format = Format { pretty };
    if let Some((_, f)) = query.iter().find(|(k, _)| k == "_format") {
        let f = f.trim().to_ascii_lowercase();
        let mime = f.split(';').next().unwrap_or("").trim();
        return if matches!(
            mime,
            "json" | "application/json" | "application/fhir+json" | "application/json+fhir"
        ) {
            Ok(format)
        } else {
            Err(FhirError::NotAcceptable(format!(
                "_format={mime} is not supported; this server speaks application/fhir+json"
            )))
        };
    }
    let accept = headers
        .get_all("accept")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if accept.trim().is_empty() {
        return Ok(format);
    }
    let acceptable = accept.split(',').any(|item| {
        let mut parts = item.split(';');
        let mime = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
        !refused
            && (mime.contains("json")
                || mime == "*/*"
                || mime == "application/*"
                || mime.is_empty())
    });
    if acceptable {
        Ok(format)
    } else {
        Err(FhirError::NotAcceptable(
            "only application/fhir+json is available (XML is not supported)".into(),
        ))
    }
}

/// A response body: stored resource bytes (served as they are unless `_pretty`), or a value.
#[derive(Debug, Clone)]
pub enum Body {
    None,
    Raw(Bytes),
    Json(Value),
}

impl Body {
    /// The body as a JSON value (parsing stored bytes): for embedding in a Bundle.
    pub fn to_value(&self) -> Option<Value> {
        match self {
            Body::None => None,
            Body::Raw(b) => serde_json::from_slice(b).ok(),
            Body::Json(v) => Some(v.clone()),
        }
    }
}

/// The answer to one FHIR interaction, before it becomes HTTP (or a Bundle entry's response).
#[derive(Debug, Clone)]
pub struct FhirResponse {
    pub status: StatusCode,
    pub body: Body,
    /// The version the response is about (`ETag: W/"n"`).
    pub version: Option<u64>,
    pub last_modified_ms: Option<i64>,
    /// `Type/id/_history/n`, made absolute with the base URL when rendered.
    pub location: Option<String>,
}

impl FhirResponse {
    pub fn new(status: StatusCode, body: Body) -> Self {
        Self {
            status,
            body,
            version: None,
            last_modified_ms: None,
            location: None,
        }
    }

    pub fn json(status: StatusCode, value: Value) -> Self {
        Self::new(status, Body::Json(value))
    }

    pub fn from_error(error: &FhirError) -> Self {
        let mut r = Self::json(error.status(), error.operation_outcome());
        if let FhirError::Gone { version, .. } = error {
            r.version = Some(*version);
        }
        r
    }
}

/// Renders `response` as HTTP: status, `application/fhir+json`, `ETag`, `Last-Modified`,
/// `Location` (absolute, under `base`), the body (pretty-printed when asked). HEAD gets the
/// headers only.
pub fn render(
    response: FhirResponse,
    format: Format,
    base: &str,
    head_only: bool,
) -> warp::reply::Response {
    let bytes: Option<Bytes> = match &response.body {
        Body::None => None,
        Body::Raw(b) if !format.pretty => Some(b.clone()),
        Body::Raw(b) => Some(match serde_json::from_slice::<Value>(b) {
            Ok(v) => serde_json::to_vec_pretty(&v)
                .map(Bytes::from)
                .unwrap_or_else(|_| b.clone()),
            Err(_) => b.clone(),
        }),
        Body::Json(v) => {
            let printed = if format.pretty {
                serde_json::to_vec_pretty(v)
            } else {
                serde_json::to_vec(v)
            };
            Some(Bytes::from(printed.unwrap_or_default()))
        }
    };
    let has_body = bytes.is_some();
    let mut http = match bytes {
        Some(b) if !head_only => warp::reply::Response::new(b.into()),
        _ => warp::reply::Response::new(Bytes::new().into()),
    };
    *http.status_mut() = response.status;
    let headers = http.headers_mut();
    if has_body {
        headers.insert(
            warp::http::header::CONTENT_TYPE,
            HeaderValue::from_static(FHIR_JSON),
        );
    }
    if let Some(v) = response.version {
        if let Ok(h) = HeaderValue::from_str(&sphere_domain::fhir_rest::etag(v)) {
            headers.insert(warp::http::header::ETAG, h);
        }
    }
    if let Some(ms) = response.last_modified_ms {
        if let Ok(h) = HeaderValue::from_str(&super::store::http_date(ms)) {
            headers.insert(warp::http::header::LAST_MODIFIED, h);
        }
    }
    if let Some(location) = &response.location {
        if let Ok(h) = HeaderValue::from_str(&format!("{base}/{location}")) {
            headers.insert(warp::http::header::LOCATION, h.clone());
            if response.status == StatusCode::CREATED || response.status == StatusCode::OK {
                headers.insert(warp::http::header::CONTENT_LOCATION, h);
            }
        }
    }
    http
}
