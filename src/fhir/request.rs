//! A FHIR request as the interactions see it, whether it came over HTTP or from a Bundle entry:
//! the route (which interaction, on what), the query, the conditional headers, `Prefer`, and
//! the body.

use bytes::Bytes;
use serde_json::Value;
use sphere_domain::fhir::{is_resource_type, is_supported_resource_type};
use warp::http::{HeaderMap, Method};

use super::outcome::FhirError;

/// Which interaction a request asks for. Search-type, search-system, compartment search and
/// the operations other modules own are not routes here: [`classify`] leaves them alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Capabilities,
    /// POST of a Bundle to the base: transaction or batch.
    Bundle,
    HistorySystem,
    HistoryType(String),
    HistoryInstance(String, String),
    Create(String),
    /// PUT `[type]?search`.
    ConditionalUpdate(String),
    /// DELETE `[type]?search`.
    ConditionalDelete(String),
    Read(String, String),
    VRead(String, String, String),
    Update(String, String),
    Delete(String, String),
    Patch(String, String),
    /// POST `[type]/$validate` or `[type]/[id]/$validate`.
    Validate(String, Option<String>),
    /// A path under a resource type this server does not know or serve.
    UnknownType(String),
    /// A known path with a method it does not allow.
    MethodNotAllowed(&'static str),
}

impl Route {
    /// Does this route read a request body?
    pub fn takes_body(&self) -> bool {
        matches!(
            self,
            Route::Bundle
                | Route::Create(_)
                | Route::ConditionalUpdate(_)
                | Route::Update(..)
                | Route::Patch(..)
                | Route::Validate(..)
        )
    }
}

/// Maps a method and the path segments after the FHIR base to a route; None when the request is
/// not an interaction of this module (a search, `$everything`, `$export`...), so the next filter
/// may take it. `has_query` tells a conditional update/delete from a plain one on `[type]`.
pub fn classify(method: &Method, segments: &[&str], has_query: bool) -> Option<Route> {
    let get = method == Method::GET || method == Method::HEAD;
    let type_route = |t: &str| -> Option<Route> {
        if is_resource_type(t) && is_supported_resource_type(t) {
            None
        } else {
            Some(Route::UnknownType(t.to_owned()))
        }
    };
    match segments {
        [] => (method == Method::POST).then_some(Route::Bundle),
        ["metadata"] => Some(if get {
            Route::Capabilities
        } else {
            Route::MethodNotAllowed("metadata supports GET only")
        }),
        ["_history"] => get.then_some(Route::HistorySystem),
        [t, ..] if t.starts_with('$') || t.starts_with('_') => None,
        [t] => {
            if let Some(unknown) = type_route(t) {
                // Leave GET to the search module, which answers unknown types itself.
                return (!get).then_some(unknown);
            }
            let t = (*t).to_owned();
            match *method {
                Method::POST => Some(Route::Create(t)),
                Method::PUT if has_query => Some(Route::ConditionalUpdate(t)),
                Method::DELETE if has_query => Some(Route::ConditionalDelete(t)),
                Method::PUT | Method::DELETE => Some(Route::MethodNotAllowed(
                    "conditional update and delete need search parameters",
                )),
                _ => None,
            }
        }
        [t, rest @ ..] if type_route(t).is_some() => {
            // Searches (`_search`) and compartments are the search module's to refuse.
            if rest.first() == Some(&"_search") {
                None
            } else {
                type_route(t)
            }
        }
        [t, "_history"] => get.then(|| Route::HistoryType((*t).to_owned())),
        [_, "_search"] => None,
        [t, "$validate"] => {
            (method == Method::POST).then(|| Route::Validate((*t).to_owned(), None))
        }
        [_, op] if op.starts_with('$') => None,
        [t, id] => {
            let (t, id) = ((*t).to_owned(), (*id).to_owned());
            Some(match *method {
                Method::GET | Method::HEAD => Route::Read(t, id),
                Method::PUT => Route::Update(t, id),
                Method::DELETE => Route::Delete(t, id),
                Method::PATCH => Route::Patch(t, id),
                _ => Route::MethodNotAllowed("use GET, PUT, DELETE or PATCH on a resource"),
            })
        }
        [t, id, "_history"] => {
            get.then(|| Route::HistoryInstance((*t).to_owned(), (*id).to_owned()))
        }
        [t, id, "_history", v] => {
            get.then(|| Route::VRead((*t).to_owned(), (*id).to_owned(), (*v).to_owned()))
        }
        [t, id, "$validate"] => (method == Method::POST)
            .then(|| Route::Validate((*t).to_owned(), Some((*id).to_owned()))),
        _ => None,
    }
}

/// What `Prefer: return=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

/// The conditional headers of a request (or the same fields of `Bundle.entry.request`).
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub if_none_exist: Option<String>,
}

/// A request body: bytes from HTTP, or an already-parsed resource from a Bundle entry.
#[derive(Debug, Clone)]
pub enum Payload {
    None,
    Bytes(Bytes),
    Json(Value),
}

#[derive(Debug, Clone)]
pub struct FhirRequest {
    pub method: Method,
    pub route: Route,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    pub conditions: Conditions,
    /// None: the client stated no preference.
    pub prefer: Option<Return>,
    pub payload: Payload,
}

impl FhirRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query string without the parameters that only shape the response (`_format`,
    /// `_pretty`), for conditional interactions.
    pub fn search_query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                self.query
                    .iter()
                    .filter(|(k, _)| k != "_format" && k != "_pretty"),
            )
            .finish()
    }
}

pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub fn conditions(headers: &HeaderMap) -> Conditions {
    Conditions {
        if_match: header(headers, "if-match"),
        if_none_match: header(headers, "if-none-match"),
        if_modified_since: header(headers, "if-modified-since"),
        if_none_exist: header(headers, "if-none-exist"),
    }
}

/// `Prefer: return=...` (other preferences such as `handling=` and `respond-async` are ignored).
pub fn prefer(headers: &HeaderMap) -> Option<Return> {
    headers.get_all("prefer").iter().find_map(|v| {
        v.to_str().ok()?.split([',', ';']).find_map(|p| {
            match p.trim().strip_prefix("return=")?.trim_matches('"') {
                "minimal" => Some(Return::Minimal),
                "representation" => Some(Return::Representation),
                "OperationOutcome" => Some(Return::OperationOutcome),
                _ => None,
            }
        })
    })
}

/// Refuses a request body that is not FHIR JSON (415), or for PATCH not a JSON Patch. A missing
/// Content-Type is read as the expected one: plenty of clients forget it, and the body is
/// parsed strictly anyway.
pub fn check_content_type(headers: &HeaderMap, route: &Route) -> Result<(), FhirError> {
    let Some(value) = headers.get("content-type") else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("").to_ascii_lowercase();
    let mime = text.split(';').next().unwrap_or("").trim();
    if let Route::Patch(..) = route {
        return if mime == "application/json-patch+json" {
            Ok(())
        } else {
            Err(FhirError::UnsupportedMediaType(format!(
                "Content-Type {mime:?} is not supported for PATCH; send a JSON Patch as application/json-patch+json"
            )))
        };
    }
    if matches!(
        mime,
        "application/fhir+json" | "application/json" | "application/json+fhir" | "text/json"
    ) {
        Ok(())
    } else {
        Err(FhirError::UnsupportedMediaType(format!(
            "Content-Type {mime:?} is not supported; send application/fhir+json"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        classify(&method, &segments, false)
    }

    #[test]
    fn interactions_are_routed_and_searches_are_left_alone() {
        assert_eq!(
            route(Method::GET, "Patient/1"),
            Some(Route::Read("Patient".into(), "1".into()))
        );
        assert_eq!(
            route(Method::GET, "Patient/1/_history/2"),
            Some(Route::VRead("Patient".into(), "1".into(), "2".into()))
        );
        assert_eq!(route(Method::POST, ""), Some(Route::Bundle));
        assert_eq!(route(Method::GET, ""), None);
        assert_eq!(route(Method::GET, "Patient"), None);
        assert_eq!(route(Method::POST, "Patient/_search"), None);
        assert_eq!(route(Method::GET, "Patient/1/Observation"), None);
        assert_eq!(route(Method::GET, "Patient/1/$everything"), None);
        assert_eq!(route(Method::GET, "$export"), None);
        assert_eq!(
            route(Method::POST, "Nonsense"),
            Some(Route::UnknownType("Nonsense".into()))
        );
        assert_eq!(
            route(Method::GET, "Nonsense/1"),
            Some(Route::UnknownType("Nonsense".into()))
        );
        assert_eq!(
            route(Method::POST, "Observation/$validate"),
            Some(Route::Validate("Observation".into(), None))
        );
    }

    #[test]
    fn prefer_return_is_read_among_other_preferences() {
        let mut h = HeaderMap::new();
        h.insert("prefer", "handling=strict, return=minimal".parse().unwrap());
        assert_eq!(prefer(&h), Some(Return::Minimal));
        h.insert("prefer", "return=OperationOutcome".parse().unwrap());
        assert_eq!(prefer(&h), Some(Return::OperationOutcome));
    }
}
