//! Builders for the FHIR datatypes the generator repeats on every resource.

use serde_json::{Map, Value};

use super::codes::{Code, DATA_ABSENT, UCUM};

pub const US_CORE: &str = "http://hl7.org/fhir/us/core/StructureDefinition/";

pub fn coding(code: &Code) -> Value {
    js!({"system": code.system, "code": code.code, "display": code.display})
}

/// A CodeableConcept with one coding and the display repeated as text (what most EHRs send).
pub fn concept(code: &Code) -> Value {
    js!({"coding": [coding(code)], "text": code.display})
}

/// A CodeableConcept with several codings of the same concept (e.g. SNOMED CT + ICD-10-CM).
pub fn concept_of(codes: &[&Code], text: &str) -> Value {
    js!({"coding": codes.iter().map(|c| coding(c)).collect::<Vec<_>>(), "text": text})
}

/// A CodeableConcept from a bare system and code, for the fixed category/status vocabularies.
pub fn simple_concept(system: &str, code: &str, display: &str) -> Value {
    js!({"coding": [{"system": system, "code": code, "display": display}], "text": display})
}

pub fn reference(resource_type: &str, id: &str) -> Value {
    js!({"reference": format!("{resource_type}/{id}")})
}

/// A UCUM quantity: `unit` is the human-readable unit and `code` the UCUM code.
pub fn quantity(value: f64, unit: &str, code: &str) -> Value {
    js!({"value": value, "unit": unit, "system": UCUM, "code": code})
}

pub fn data_absent(code: &str, display: &str) -> Value {
    simple_concept(DATA_ABSENT, code, display)
}

/// `meta` claiming one US Core profile (`name` is the StructureDefinition id).
pub fn meta(profile: &str) -> Value {
    js!({"profile": [format!("{US_CORE}{profile}")]})
}

/// The start of every resource: resourceType, id, meta.profile (when there is one).
pub fn resource(resource_type: &str, id: &str, profile: Option<&str>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("resourceType".into(), Value::from(resource_type));
    map.insert("id".into(), Value::from(id));
    if let Some(profile) = profile {
        map.insert("meta".into(), meta(profile));
    }
    map
}

/// Sets `key` on an object under construction; a tiny helper so builders read top to bottom.
pub fn set(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.insert(key.to_owned(), value);
}

/// Base64 (RFC 4648, with padding) for attachment data: a few lines here rather than a dependency.
pub fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextets = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[*s as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An NPI with a valid check digit: the Luhn algorithm over the 80840 card-issuer prefix, which is
/// what the US Core us-core-17 invariant checks (its "+ 24" is the prefix's contribution).
pub fn npi(base9: u64) -> String {
    let digits: Vec<u32> = format!("{:09}", base9 % 1_000_000_000)
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let mut sum = 24;
    for (i, d) in digits.iter().enumerate() {
        sum += if i % 2 == 0 {
            let doubled = d * 2;
            if doubled > 9 {
                doubled - 9
            } else {
                doubled
            }
        } else {
            *d
        };
    }
    let check = (10 - sum % 10) % 10;
    let mut out: String = digits.iter().map(|d| char::from(b'0' + *d as u8)).collect();
    out.push(char::from(b'0' + check as u8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn npi_check_digit_matches_known_numbers() {
        // 1234567893 is the CMS example NPI; 9941339100 is in the US Core examples.
        assert_eq!(npi(123_456_789), "1234567893");
        assert_eq!(npi(994_133_910), "9941339100");
    }
}
