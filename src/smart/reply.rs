//! Replies shared by the authorization server's endpoints: RFC 6749 error JSON, JSON with
//! `no-store`, HTML pages with the anti-framing policy, CORS for browser apps.

use serde::Serialize;
use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::{Filter, Reply};

/// An OAuth 2.0 error (RFC 6749 5.2, RFC 7009, RFC 7591). The description never holds a
/// token, code or secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    /// Set for client authentication failures by Basic: RFC 6749 asks for the challenge.
    pub basic_challenge: bool,
}

impl OAuthError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            basic_challenge: false,
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn server(d: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", d)
    }
    pub fn too_many(retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("rate limit reached; retry after {retry_after} s"),
        )
    }

    pub fn into_response(self) -> warp::reply::Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = json_no_store(&body, self.status);
        if self.basic_challenge {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"sphere\""),
            );
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            let seconds = self
                .description
                .rsplit("after ")
                .next()
                .and_then(|s| s.split(' ').next())
                .unwrap_or("1")
                .to_owned();
            if let Ok(v) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert("retry-after", v);
            }
        }
        response
    }
}

impl From<crate::eventlog::EventLogError> for OAuthError {
    fn from(e: crate::eventlog::EventLogError) -> Self {
        tracing::error!(error = %e, "event log failed during an authorization request");
        Self::server("the event log is unavailable")
    }
}

/// JSON with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 5.1).
pub fn json_no_store<T: Serialize>(body: &T, status: StatusCode) -> warp::reply::Response {
    let mut response = warp::reply::with_status(warp::reply::json(body), status).into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert("pragma", HeaderValue::from_static("no-cache"));
    response
}

/// An HTML page that may not be framed (clickjacking) and loads nothing from elsewhere.
pub fn html(status: StatusCode, body: String) -> warp::reply::Response {
    let mut response = warp::reply::with_status(warp::reply::html(body), status).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// A 303 to `location`.
pub fn see_other(location: &str) -> warp::reply::Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert("location", v);
    }
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

/// Adds CORS headers for browser apps: any origin, no cookies (tokens travel in headers).
pub fn cors(mut response: warp::reply::Response) -> warp::reply::Response {
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("location, content-location, www-authenticate, retry-after"),
    );
    response
}

/// `OPTIONS` preflight for the discovery, token, revocation, introspection and registration
/// endpoints.
pub fn preflight() -> BoxedFilter<(warp::reply::Response,)> {
    warp::options()
        .and(warp::path::full())
        .and_then(|path: warp::path::FullPath| async move {
            let p = path.as_str();
            if p.starts_with("/auth/") || p.contains("/.well-known/") {
                let mut response = cors(StatusCode::NO_CONTENT.into_response());
                let headers = response.headers_mut();
                headers.insert(
                    "access-control-allow-methods",
                    HeaderValue::from_static("GET, POST, OPTIONS"),
                );
                headers.insert(
                    "access-control-allow-headers",
                    HeaderValue::from_static("authorization, content-type, accept"),
                );
                headers.insert("access-control-max-age", HeaderValue::from_static("600"));
                Ok(response)
            } else {
                Err(warp::reject::not_found())
            }
        })
        .boxed()
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Parses an `application/x-www-form-urlencoded` body into pairs, keeping repeated keys
/// (the consent form's `scope` checkboxes).
pub fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The first value of `key`.
pub fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The first non-empty value of `key`, refusing repeats (RFC 6749 3.1: parameters must not
/// be included more than once).
pub fn single<'a>(pairs: &'a [(String, String)], key: &str) -> Result<Option<&'a str>, String> {
    let mut values = pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str());
    let value = values.next();
    if values.next().is_some() {
        return Err(format!("parameter {key} is repeated"));
    }
    Ok(value.filter(|v| !v.is_empty()))
}

/// A form body (bounded) as pairs.
pub fn form_body() -> BoxedFilter<(Vec<(String, String)>,)> {
    warp::body::content_length_limit(64 * 1024)
        .and(warp::body::bytes())
        .map(|b: bytes::Bytes| form_pairs(&b))
        .boxed()
}
