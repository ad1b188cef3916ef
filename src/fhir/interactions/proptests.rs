//! The request input path never panics, whatever arrives: bodies (bytes and JSON of any
//! shape), Bundle entries, paths, headers, ETags and times.

use proptest::prelude::*;
use serde_json::{Map, Value};
use warp::http::{HeaderMap, HeaderValue, Method};

use super::super::format::negotiate;
use super::super::request::{classify, parse_query, prefer, Payload};
use super::super::store::{parse_fhir_time, parse_http_date};
use super::{bundle, check_valid, parse_resource};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9 .:/|-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("Patient"),
            Just("Observation"),
            Just("Bundle"),
            Just("urn:uuid:1"),
            Just("POST"),
            Just("PUT"),
            Just("Patient/1"),
            Just("W/\"1\""),
            Just("2024-01-01")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("resourceType".to_owned()),
                        Just("id".to_owned()),
                        Just("meta".to_owned()),
                        Just("name".to_owned()),
                        Just("gender".to_owned()),
                        Just("birthDate".to_owned()),
                        Just("request".to_owned()),
                        Just("resource".to_owned()),
                        Just("method".to_owned()),
                        Just("url".to_owned()),
                        Just("fullUrl".to_owned()),
                        Just("code".to_owned()),
                        Just("status".to_owned()),
                        Just("subject".to_owned()),
                        Just("reference".to_owned()),
                        "[a-z]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_resource_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(m) = parse_resource(&Payload::Bytes(bytes.into()), "Patient") {
            let _ = check_valid(&Value::Object(m));
        }
    }

    #[test]
    fn arbitrary_json_never_panics_parsing_validation_or_bundle_entries(
        mut value in json_value(),
        t in prop_oneof![Just("Patient"), Just("Observation")],
    ) {
        if let Value::Object(m) = &mut value {
            if m.len() % 2 == 0 {
                m.insert("resourceType".into(), Value::String(t.into()));
            }
        }
        if let Ok(m) = parse_resource(&Payload::Json(value.clone()), t) {
            let _ = check_valid(&Value::Object(m));
        }
        let _ = bundle::parse_entry("https://x/fhir/r4", value);
    }

    #[test]
    fn arbitrary_paths_queries_and_headers_never_panic(
        segments in prop::collection::vec("[A-Za-z$_0-9.-]{0,10}", 0..5),
        query in "[ -~]{0,40}",
        header in "[ -~]{0,40}",
        method in prop_oneof![Just(Method::GET), Just(Method::POST), Just(Method::PUT), Just(Method::DELETE), Just(Method::PATCH), Just(Method::HEAD)],
    ) {
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let _ = classify(&method, &segs, !query.is_empty());
        let q = parse_query(&query);
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&header) {
            headers.insert("accept", v.clone());
            headers.insert("prefer", v);
        }
        let _ = negotiate(&q, &headers);
        let _ = prefer(&headers);
        let _ = sphere_domain::fhir_rest::parse_etag(&header);
        let _ = parse_fhir_time(&header);
        let _ = parse_http_date(&header);
    }
}
