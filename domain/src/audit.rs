//! Access history: the shape of one audit event (`AccessRecorded` in stream
//! `audit-{yyyy-mm-dd}`), and how it reads as a FHIR `AuditEvent` per the FHIR Basic Audit Log
//! Patterns (BALP).
//!
//! One event per answered request that reads or touches data or credentials: who (client,
//! user, token id, source address), what (interaction, resource types, `Type/id`s, the search
//! query, the patients concerned), the outcome (HTTP status) and when. Never a token, a
//! secret or a resource body: the `token_id` is the token's `jti`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The category of the audit streams.
pub const AUDIT_CATEGORY: &str = "audit";
/// The event type of one recorded access.
pub const ACCESS_RECORDED: &str = "AccessRecorded";

/// One access, as the log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    /// When the request was answered, Unix milliseconds.
    pub recorded_ms: i64,
    /// `read`, `vread`, `search-type`, `search-system`, `history-instance`, `history-type`,
    /// `history-system`, `create`, `update`, `delete`, `operation` (with `operation` set),
    /// `bulk-export`, `bulk-status`, `bulk-download`, `token`, `token-revoke`, `login`,
    /// `access-history`, or `denied` for a refusal no handler named.
    pub interaction: String,
    /// The named operation (`$everything`, `$export`) when `interaction` is `operation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// `Type/id` of every resource read or returned (or the file downloaded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// The search query as received (`name=...&_count=10`), for searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Ids of the patients whose data the request concerned (`123`, not `Patient/123`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The access token's `jti` (never the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub status: u16,
    /// Why a request was refused (`insufficient_scope`, `invalid_token`), never PHI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The stream holding the accesses of the UTC day of `ms`: `audit-2026-01-31`.
pub fn stream_for(ms: i64) -> String {
    format!("{AUDIT_CATEGORY}-{}", day_of(ms))
}

/// `yyyy-mm-dd` (UTC) of a Unix-millisecond instant.
pub fn day_of(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(86_400_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// An instant in FHIR form (`2026-01-31T12:00:00.000Z`).
pub fn instant(ms: i64) -> String {
    let day = ms.div_euclid(86_400_000);
    let rest = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(day);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// How the FHIR REST interactions are coded (`http://hl7.org/fhir/restful-interaction`), and
/// the CRUDE action of each.
fn rest_subtype(interaction: &str) -> Option<(&'static str, &'static str)> {
    Some(match interaction {
        "read" => ("read", "R"),
        "vread" => ("vread", "R"),
        "search-type" => ("search-type", "E"),
        "search-system" => ("search-system", "E"),
        "history-instance" => ("history-instance", "R"),
        "history-type" => ("history-type", "R"),
        "history-system" => ("history-system", "R"),
        "create" => ("create", "C"),
        "update" => ("update", "U"),
        "delete" => ("delete", "D"),
        "operation" | "bulk-export" | "bulk-status" | "bulk-download" => ("operation", "E"),
        "capabilities" => ("capabilities", "R"),
        _ => return None,
    })
}

pub const REST_INTERACTION_SYSTEM: &str = "http://hl7.org/fhir/restful-interaction";
/// Codes for what has no FHIR REST code: token issue and revocation, sign-in, refusals.
pub const SPHERE_AUDIT_SYSTEM: &str = "urn:sphere:audit-subtype";
const AUDIT_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

/// The `(type system, type code)` and `(subtype system, subtype code)` of a record: `rest` with
/// a REST interaction code, or DICOM "User Authentication" (110114) for sign-in and tokens.
pub fn type_and_subtype(
    r: &AccessRecord,
) -> ((&'static str, &'static str), (&'static str, String)) {
    match rest_subtype(&r.interaction) {
        Some((code, _)) => (
            (AUDIT_TYPE_SYSTEM, "rest"),
            (REST_INTERACTION_SYSTEM, code.to_owned()),
        ),
        None if matches!(r.interaction.as_str(), "login" | "token" | "token-revoke") => (
            (DCM, "110114"),
            (SPHERE_AUDIT_SYSTEM, r.interaction.clone()),
        ),
        None => (
            (AUDIT_TYPE_SYSTEM, "rest"),
            (SPHERE_AUDIT_SYSTEM, r.interaction.clone()),
        ),
    }
}

/// The record as a FHIR R4 `AuditEvent` (BALP shape): `id` is the event id in the log.
pub fn to_audit_event(id: &str, r: &AccessRecord, observer: &str) -> Value {
    let ((type_system, type_code), (sub_system, sub_code)) = type_and_subtype(r);
    let action = rest_subtype(&r.interaction).map_or("E", |(_, a)| a);
    let outcome = match r.status {
        0..=399 => "0",
        400..=499 => "4",
        _ => "8",
    };
    let mut agents = Vec::new();
    let mut client = json!({
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": "urn:sphere:client-id", "value": r.client_id.as_deref().unwrap_or("anonymous")}},
        "requestor": r.user.is_none(),
    });
    if let Some(ip) = &r.source_ip {
        client["network"] = json!({"address": ip, "type": "2"});
    }
    if r.user.is_none() {
        if let Some(jti) = &r.token_id {
            client["policy"] = json!([jti]);
        }
    }
    agents.push(client);
    if let Some(user) = &r.user {
        let mut agent = json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type", "code": "humanuser", "display": "human user"}]},
            "who": {"identifier": {"system": "urn:sphere:username", "value": user}},
            "requestor": true,
        });
        if let Some(jti) = &r.token_id {
            agent["policy"] = json!([jti]);
        }
        agents.push(agent);
    }
    agents.push(json!({
        "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": observer},
        "requestor": false,
        "network": {"address": r.path, "type": "5"},
    }));
    let mut entities = Vec::new();
    for p in &r.patients {
        entities.push(json!({
            "what": {"reference": format!("Patient/{p}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }));
    }
    if let Some(q) = &r.query {
        use crate::synthetic::datatypes::base64 as encode;
        let what = match r.types.first() {
            Some(t) => format!("{t}?{q}"),
            None => format!("?{q}"),
        };
        entities.push(json!({
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
            "query": encode(what.as_bytes()),
        }));
    }
    for id in &r.ids {
        entities.push(json!({
            "what": {"reference": id},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "4", "display": "Domain Resource"},
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": id,
        "type": {"system": type_system, "code": type_code},
        "subtype": [{"system": sub_system, "code": sub_code}],
        "action": action,
        "recorded": instant(r.recorded_ms),
        "outcome": outcome,
        "outcomeDesc": match &r.detail {
            Some(d) => format!("HTTP {} ({d})", r.status),
            None => format!("HTTP {}", r.status),
        },
        "agent": agents,
        "source": {
            "observer": {"display": observer},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}],
        },
    });
    if !entities.is_empty() {
        event["entity"] = Value::Array(entities);
    }
    event
}

/// Patient ids a stored resource's JSON points at: the id of a `Patient`, else every
/// `"Patient/{id}"` reference in the bytes. A byte scan rather than a parse, because it runs
/// for every search hit; a reference to a second patient makes the access count for both,
/// which errs on the side an audit trail should.
pub fn patients_in(resource_type: &str, id: &str, json: &[u8]) -> Vec<String> {
    if resource_type == "Patient" {
        return vec![id.to_owned()];
    }
    let needle = b"Patient/";
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while i + needle.len() <= json.len() {
        if &json[i..i + needle.len()] == needle {
            let start = i + needle.len();
            let end = json[start..]
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.'))
                .map_or(json.len(), |n| start + n);
            // Only a whole reference value (`"...Patient/123"`), not `Patient/123/_history`.
            if end > start && json.get(end) == Some(&b'"') {
                let id = String::from_utf8_lossy(&json[start..end]).into_owned();
                if !found.contains(&id) {
                    found.push(id);
                }
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            recorded_ms: 1_767_225_600_123, // 2026-01-01T00:00:00.123Z
            interaction: "search-type".into(),
            types: vec!["Observation".into()],
            ids: vec!["Observation/o1".into()],
            query: Some("patient=p1&code=1234-5".into()),
            patients: vec!["p1".into()],
            client_id: Some("app-y".into()),
            user: Some("alice".into()),
            token_id: Some("jti-1".into()),
            source_ip: Some("127.0.0.1".into()),
            method: "GET".into(),
            path: "/fhir/r4/Observation".into(),
            status: 200,
            ..Default::default()
        }
    }

    #[test]
    fn streams_are_per_utc_day() {
        assert_eq!(stream_for(0), "audit-1970-01-01");
        assert_eq!(stream_for(1_767_225_600_123), "audit-2026-01-01");
        assert_eq!(stream_for(1_767_225_599_999), "audit-2025-12-31");
        assert_eq!(day_of(951_782_400_000), "2000-02-29");
        assert_eq!(instant(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }

    #[test]
    fn a_record_round_trips_and_omits_what_is_absent() {
        let r = record();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<AccessRecord>(&text).unwrap(), r);
        let bare = AccessRecord {
            interaction: "denied".into(),
            method: "GET".into(),
            path: "/fhir/r4/Patient".into(),
            status: 401,
            ..Default::default()
        };
        let v = serde_json::to_value(&bare).unwrap();
        assert!(v.get("client_id").is_none() && v.get("ids").is_none());
    }

    #[test]
    fn a_search_reads_as_a_balp_audit_event() {
        let e = to_audit_event("e1", &record(), "Sphere EHR");
        assert_eq!(e["resourceType"], "AuditEvent");
        assert_eq!(e["type"]["code"], "rest");
        assert_eq!(e["subtype"][0]["code"], "search-type");
        assert_eq!(e["subtype"][0]["system"], REST_INTERACTION_SYSTEM);
        assert_eq!(e["action"], "E");
        assert_eq!(e["outcome"], "0");
        assert_eq!(e["recorded"], "2026-01-01T00:00:00.123Z");
        assert_eq!(e["agent"][0]["who"]["identifier"]["value"], "app-y");
        assert_eq!(e["agent"][0]["network"]["address"], "127.0.0.1");
        assert_eq!(e["agent"][1]["who"]["identifier"]["value"], "alice");
        assert_eq!(e["agent"][1]["policy"][0], "jti-1");
        assert_eq!(e["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(
            e["entity"][1]["query"],
            crate::synthetic::datatypes::base64(b"Observation?patient=p1&code=1234-5")
        );
        assert_eq!(e["entity"][2]["what"]["reference"], "Observation/o1");
    }

    #[test]
    fn refusals_are_failures_and_sign_in_is_user_authentication() {
        let mut r = record();
        r.status = 403;
        assert_eq!(to_audit_event("x", &r, "s")["outcome"], "4");
        r.interaction = "login".into();
        let e = to_audit_event("x", &r, "s");
        assert_eq!(e["type"]["code"], "110114");
        assert_eq!(e["subtype"][0]["code"], "login");
    }

    #[test]
    fn patients_are_found_by_reference_or_by_being_the_patient() {
        assert_eq!(patients_in("Patient", "p9", b"{}"), vec!["p9"]);
        let obs = br#"{"subject":{"reference":"Patient/p1"},"performer":[{"reference":"Patient/p1"},{"reference":"Practitioner/d"}],"x":{"reference":"https://h/fhir/r4/Patient/p-2"}}"#;
        assert_eq!(patients_in("Observation", "o", obs), vec!["p1", "p-2"]);
        assert!(patients_in("Observation", "o", br#"{"x":"Patient/"}"#).is_empty());
    }
}
