//! Primitive data types: JSON representation and lexical format (the FHIR regexes), plus the
//! calendar and range rules the regexes cannot express.

use serde_json::Value;

use crate::fhir::definitions::{PrimitiveDef, PrimitiveJson};

/// Checks a primitive value; returns a message describing the problem, if any.
pub(super) fn check(def: &PrimitiveDef, value: &Value) -> Option<String> {
    let text = match (def.json, value) {
        (PrimitiveJson::Boolean, Value::Bool(_)) => return None,
        // Numbers keep their text as written (arbitrary_precision).
        (PrimitiveJson::Integer | PrimitiveJson::Decimal, Value::Number(n)) => n.as_str(),
        (PrimitiveJson::String, Value::String(s)) => s.as_str(),
        _ => {
            return Some(format!(
                "Expected {} for {}, found {}",
                expected_json(def.json),
                def.name,
                json_kind(value)
            ))
        }
    };
    check_text(def, text)
}

/// Checks the text of a primitive already known to have the right JSON kind.
pub(super) fn check_text(def: &PrimitiveDef, text: &str) -> Option<String> {
    let name = def.name;
    // FHIR JSON: a primitive is never an empty string (some regexes, like uri's, would allow it).
    if text.is_empty() && def.json == PrimitiveJson::String {
        return Some(format!(
            "Empty string is not a valid {name} (omit the element instead)"
        ));
    }
    if name == "xhtml" {
        let t = text.trim();
        return (!(t.starts_with("<div") && t.ends_with("</div>")))
            .then(|| "Narrative div must be an XHTML <div> element".to_owned());
    }
    if let Some(re) = &def.regex {
        if !re.is_match(text) {
            return Some(if text.is_empty() {
                format!("Empty string is not a valid {name} (omit the element instead)")
            } else {
                format!("'{}' is not a valid {name}", truncate(text))
            });
        }
    }
    let problem = match def.json {
        // FHIR integers are 32-bit signed.
        PrimitiveJson::Integer if text.parse::<i32>().is_err() => {
            format!("{} is out of range for {name} (32-bit)", truncate(text))
        }
        PrimitiveJson::String
            if matches!(name, "date" | "dateTime" | "instant") && !day_exists(text) =>
        {
            format!("'{}' is not a valid {name}: no such day", truncate(text))
        }
        _ => return None,
    };
    Some(problem)
}

/// The day of a `YYYY-MM-DD...` value exists in its month (the regex allows 31 everywhere).
fn day_exists(text: &str) -> bool {
    let parts = (text.get(0..4), text.get(5..7), text.get(8..10));
    let (Some(y), Some(m), Some(d)) = parts else {
        return true; // year or year-month precision
    };
    let (Ok(y), Ok(m), Ok(d)) = (y.parse::<u32>(), m.parse::<u32>(), d.parse::<u32>()) else {
        return true; // the regex already rejected it
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    d >= 1 && d <= days
}

fn expected_json(kind: PrimitiveJson) -> &'static str {
    match kind {
        PrimitiveJson::Boolean => "a JSON boolean",
        PrimitiveJson::Integer => "a JSON number (integer)",
        PrimitiveJson::Decimal => "a JSON number",
        PrimitiveJson::String => "a JSON string",
    }
}

pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Keeps messages short when a client sends a huge bad value.
pub(super) fn truncate(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::definitions::definitions;
    use serde_json::json;

    fn check_named(name: &str, value: Value) -> Option<String> {
        check(definitions().primitive(name).expect("primitive"), &value)
    }

    #[test]
    fn formats_follow_the_fhir_regexes() {
        assert_eq!(check_named("date", json!("2020-02-29")), None);
        assert!(check_named("date", json!("2021-02-29")).is_some());
        assert!(check_named("date", json!("2021-04-31")).is_some());
        assert_eq!(check_named("dateTime", json!("2021-04-30T10:00:00Z")), None);
        assert!(check_named("dateTime", json!("2021-04-30T10:00:00")).is_some());
        assert!(check_named("instant", json!("2021-04-30")).is_some());
        assert_eq!(check_named("id", json!("a-1.b")), None);
        assert!(check_named("id", json!("a_1")).is_some());
        assert!(check_named("code", json!(" x")).is_some());
        assert!(check_named("string", json!("")).is_some());
        assert_eq!(check_named("boolean", json!(true)), None);
        assert!(check_named("boolean", json!("true")).is_some());
        assert!(check_named("uri", json!("a b")).is_some());
        assert!(check_named("uri", json!("")).is_some());
    }

    #[test]
    fn numbers_keep_their_text() {
        let v: Value = serde_json::from_str("1.50").expect("json");
        assert_eq!(check_named("decimal", v), None);
        let v: Value = serde_json::from_str("1.0").expect("json");
        assert!(check_named("integer", v).is_some());
        let v: Value = serde_json::from_str("3000000000").expect("json");
        assert!(check_named("integer", v).is_some());
        assert!(check_named("positiveInt", json!(0)).is_some());
        assert_eq!(check_named("unsignedInt", json!(0)), None);
        assert!(check_named("decimal", json!("1.5")).is_some());
    }

    #[test]
    fn narrative_div_must_be_a_div() {
        assert_eq!(
            check_named(
                "xhtml",
                json!("<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>")
            ),
            None
        );
        assert!(check_named("xhtml", json!("<p>x</p>")).is_some());
    }
}
