//! Required-binding checks against the enumerated value sets.

use serde_json::Value;

use crate::fhir::definitions::definitions;

/// Checks `value` (a code string, Coding or CodeableConcept) against a required value set.
/// Returns a message when it is not in the set; `None` when it is, or when the value set is not
/// enumerable (then it cannot be checked here) or the value has another shape (reported elsewhere).
pub(super) fn check(value_set: &str, value: &Value) -> Option<String> {
    let vs = definitions().value_set(value_set)?;
    match value {
        Value::String(code) => (!vs.contains_code(code))
            .then(|| format!("Code '{code}' is not in the required value set {value_set}")),
        Value::Object(obj) => {
            if obj.contains_key("coding") || obj.contains_key("text") {
                // CodeableConcept: one of its codings must come from the value set.
                let codings = obj.get("coding").and_then(Value::as_array);
                let ok = codings
                    .into_iter()
                    .flatten()
                    .any(|c| coding_in(vs, c).unwrap_or(false));
                (!ok).then(|| {
                    let found: Vec<String> = codings
                        .into_iter()
                        .flatten()
                        .filter_map(describe_coding)
                        .collect();
                    if found.is_empty() {
                        format!("No code provided; a code from the required value set {value_set} is required")
                    } else {
                        format!(
                            "None of the codings ({}) is in the required value set {value_set}",
                            found.join(", ")
                        )
                    }
                })
            } else {
                match coding_in(vs, value) {
                    Some(false) => Some(format!(
                        "Coding {} is not in the required value set {value_set}",
                        describe_coding(value).unwrap_or_default()
                    )),
                    _ => None,
                }
            }
        }
        _ => None,
    }
}

/// Some(true/false) for a Coding with a code; None when it has no code to check.
fn coding_in(vs: &crate::fhir::definitions::ValueSetCodes, coding: &Value) -> Option<bool> {
    let code = coding.get("code")?.as_str()?;
    Some(match coding.get("system").and_then(Value::as_str) {
        Some(system) => vs.contains(system, code),
        None => vs.contains_code(code),
    })
}

fn describe_coding(coding: &Value) -> Option<String> {
    let code = coding.get("code")?.as_str()?;
    Some(match coding.get("system").and_then(Value::as_str) {
        Some(system) => format!("{system}|{code}"),
        None => code.to_owned(),
    })
}
