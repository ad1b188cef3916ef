//! The kick-off request: headers and parameters (query string for GET, a `Parameters` resource
//! for POST) checked and turned into an [`ExportRequested`], or a 400 naming what is wrong.

use serde_json::Value;
use warp::http::{HeaderMap, Method};

use super::job::{ExportLevel, OutputFormat};
use super::parquet::PARQUET_MEDIA_TYPE;
use crate::fhir::store::{now_ms, parse_fhir_time};

/// The output formats Bulk Data 2.0.0 names for NDJSON.
const NDJSON_FORMATS: &[&str] = &["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// The parameters of a kick-off, validated.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct KickoffParams {
    pub types: Vec<String>,
    pub elements: Vec<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub patients: Vec<String>,
    /// `_typeFilter` queries (`Type?params`), each checked to parse and be supported.
    pub type_filters: Vec<String>,
    /// `organizeOutputBy=Patient`.
    pub organize_by_patient: bool,
    pub output_format: OutputFormat,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct KickoffError(pub String);

fn bad(message: impl Into<String>) -> KickoffError {
    KickoffError(message.into())
}

/// `Accept: application/fhir+json` and `Prefer: respond-async`, as the spec requires.
pub fn check_headers(headers: &HeaderMap) -> Result<(), KickoffError> {
    let accept = headers
        .get(warp::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept
        .split(',')
        .any(|a| a.split(';').next().map(str::trim) == Some("application/fhir+json"))
    {
        return Err(bad(
            "$export requires the header Accept: application/fhir+json",
        ));
    }
    let prefer = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !prefer
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
    {
        return Err(bad("$export requires the header Prefer: respond-async"));
    }
    Ok(())
}

/// The raw (name, value) pairs of a kick-off: from the query string, and for POST from the
/// `Parameters` body.
pub fn raw_parameters(
    method: &Method,
    query: &str,
    body: &[u8],
) -> Result<Vec<(String, String)>, KickoffError> {
    let mut pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if method == Method::POST && !body.iter().all(u8::is_ascii_whitespace) {
        let parameters: Value = serde_json::from_slice(body)
            .map_err(|_| bad("the POST body must be a FHIR Parameters resource (JSON)"))?;
        if parameters["resourceType"] != "Parameters" {
            return Err(bad("the POST body must be a FHIR Parameters resource"));
        }
        for p in parameters["parameter"].as_array().into_iter().flatten() {
            let Some(name) = p["name"].as_str() else {
                return Err(bad("every parameter needs a name"));
            };
            let value = p
                .as_object()
                .into_iter()
                .flatten()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(_, v)| v);
            let text = match value {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Object(o)) => match o.get("reference").and_then(Value::as_str) {
                    Some(r) => r.to_owned(),
                    None => return Err(bad(format!("parameter {name} has an unsupported value"))),
                },
                _ => return Err(bad(format!("parameter {name} has no value"))),
            };
            pairs.push((name.to_owned(), text));
        }
    }
    Ok(pairs)
}

/// Checks every parameter against what this server supports for `level`.
pub fn parse(
    level: &ExportLevel,
    pairs: &[(String, String)],
) -> Result<KickoffParams, KickoffError> {
    let mut params = KickoffParams::default();
    let supported = sphere_domain::fhir::capability::capability();
    for (name, value) in pairs {
        match name.as_str() {
            "_outputFormat" => {
                params.output_format = if NDJSON_FORMATS.contains(&value.as_str()) {
                    OutputFormat::Ndjson
                } else if value == PARQUET_MEDIA_TYPE {
                    OutputFormat::Parquet
                } else {
                    return Err(bad(format!(
                        "_outputFormat {value:?} is not supported (use application/fhir+ndjson or {PARQUET_MEDIA_TYPE})"
                    )));
                };
            }
            "_type" => {
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !supported.supported_types.iter().any(|s| s == t) {
                        return Err(bad(format!("_type {t:?} is not a supported resource type")));
                    }
                    if !params.types.iter().any(|x| x == t) {
                        params.types.push(t.to_owned());
                    }
                }
            }
            "_elements" => {
                for e in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    let element = e.split_once('.').map_or(e, |(_, el)| el);
                    if element.is_empty() || element.contains('.') {
                        return Err(bad(format!(
                            "_elements {e:?} must be an element or Type.element at the root"
                        )));
                    }
                    params.elements.push(e.to_owned());
                }
            }
            "_since" | "_until" => {
                let ms = parse_fhir_time(value)
                    .ok_or_else(|| bad(format!("{name} {value:?} is not a FHIR instant")))?;
                if name == "_since" {
                    if ms > now_ms() {
                        return Err(bad("_since is in the future"));
                    }
                    params.since_ms = Some(ms);
                } else {
                    params.until_ms = Some(ms);
                }
            }
            "patient" => {
                if *level == ExportLevel::System {
                    return Err(bad("patient is only allowed on Patient and Group exports"));
                }
                let id = value.strip_prefix("Patient/").unwrap_or(value);
                if !sphere_domain::resource::is_valid_id(id) {
                    return Err(bad("patient must reference Patient/{id}"));
                }
                params.patients.push(id.to_owned());
            }
            "includeAssociatedData" => {
                // Provenance is in the Patient compartment, so it is exported with the
                // resources it is about: LatestProvenanceResources asks for nothing more.
                for v in value.split(',').map(str::trim) {
                    if v != "LatestProvenanceResources" {
                        return Err(bad(format!("includeAssociatedData {v:?} is not supported")));
                    }
                }
            }
            "_typeFilter" => {
                // GET lists queries comma-separated; a POST Parameters value holds one, but
                // splitting on a new `Type?` is harmless there too.
                let queries = super::type_filter::split_queries(value);
                if queries.is_empty() {
                    return Err(bad("_typeFilter is empty"));
                }
                super::type_filter::TypeFilters::parse(&queries, "").map_err(bad)?;
                params.type_filters.extend(queries);
            }
            "organizeOutputBy" => {
                if value != "Patient" {
                    return Err(bad(format!(
                        "organizeOutputBy {value:?} is not supported (use Patient)"
                    )));
                }
                params.organize_by_patient = true;
            }
            other => {
                return Err(bad(format!("{other} is not a parameter of $export")));
            }
        }
    }
    if !params.types.is_empty() {
        for filter in &params.type_filters {
            let t = filter.split_once('?').map_or(filter.as_str(), |(t, _)| t);
            if !params.types.iter().any(|x| x == t) {
                return Err(bad(format!(
                    "_typeFilter names {t}, which is not in _type: add it to _type or drop the filter"
                )));
            }
        }
    }
    if params.organize_by_patient && params.output_format == OutputFormat::Parquet {
        // Patient blocks are NDJSON lines headed by a Parameters resource; a Parquet file has
        // one schema per type, so the two do not combine.
        return Err(bad(format!(
            "organizeOutputBy=Patient writes NDJSON patient blocks; it cannot be combined with _outputFormat={PARQUET_MEDIA_TYPE}"
        )));
    }
    if let (Some(s), Some(u)) = (params.since_ms, params.until_ms) {
        if u < s {
            return Err(bad("_until is before _since"));
        }
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        raw_parameters(&Method::GET, q, b"").expect("query parses")
    }

    #[test]
    fn ndjson_output_formats_are_accepted_and_others_refused() {
        for f in ["application/fhir%2Bndjson", "application/ndjson", "ndjson"] {
            assert!(parse(&ExportLevel::System, &pairs(&format!("_outputFormat={f}"))).is_ok());
        }
        assert!(parse(&ExportLevel::System, &pairs("_outputFormat=text/csv")).is_err());
        let parquet = parse(
            &ExportLevel::System,
            &pairs("_outputFormat=application/vnd.apache.parquet"),
        )
        .expect("parquet is accepted");
        assert_eq!(parquet.output_format, OutputFormat::Parquet);
        assert!(parse(
            &ExportLevel::System,
            &pairs("_outputFormat=application/vnd.apache.parquet&organizeOutputBy=Patient"),
        )
        .is_err());
    }

    #[test]
    fn unknown_types_and_parameters_are_refused() {
        assert!(parse(&ExportLevel::System, &pairs("_type=Nope")).is_err());
        assert!(parse(&ExportLevel::System, &pairs("_foo=1")).is_err());
        let ok = parse(
            &ExportLevel::System,
            &pairs("_type=Patient,Observation&_since=2020-01-01T00:00:00Z"),
        )
        .expect("valid");
        assert_eq!(ok.types, vec!["Patient", "Observation"]);
        assert!(ok.since_ms.is_some());
    }

    #[test]
    fn post_parameters_carry_patients() {
        let body = br#"{"resourceType":"Parameters","parameter":[{"name":"patient","valueReference":{"reference":"Patient/p1"}},{"name":"_type","valueString":"Patient"}]}"#;
        let raw = raw_parameters(&Method::POST, "", body).expect("parses");
        let p = parse(&ExportLevel::Patient, &raw).expect("valid");
        assert_eq!(p.patients, vec!["p1"]);
        assert!(parse(&ExportLevel::System, &raw).is_err());
    }
}
