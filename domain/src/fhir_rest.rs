//! Pure rules of the FHIR RESTful API that the HTTP layer applies: how a stored version is
//! stamped (`id`, `meta.versionId`, `meta.lastUpdated`), how weak ETags read, the order in
//! which a transaction processes its entries, and how `urn:uuid:` references are rewritten.
//! No IO and no clock: callers pass the time in.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Stamps a resource for storage: `id`, `meta.versionId` and `meta.lastUpdated` are set (the
/// client's values are replaced), and the keys are reordered so `resourceType`, `id` and `meta`
/// come first, as most FHIR servers print them. Everything else is kept as sent.
pub fn stamp(resource: Map<String, Value>, id: &str, version: u64, last_updated: &str) -> Value {
    let mut rest = resource;
    let resource_type = rest.remove("resourceType");
    rest.remove("id");
    let sent = match rest.remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut meta = Map::with_capacity(sent.len() + 2);
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert("lastUpdated".into(), Value::String(last_updated.to_owned()));
    meta.extend(
        sent.into_iter()
            .filter(|(k, _)| k != "versionId" && k != "lastUpdated"),
    );
    let mut out = Map::with_capacity(rest.len() + 3);
    if let Some(t) = resource_type {
        out.insert("resourceType".into(), t);
    }
    out.insert("id".into(), Value::String(id.to_owned()));
    out.insert("meta".into(), Value::Object(meta));
    out.extend(rest);
    Value::Object(out)
}

/// The JSON text of [`stamp`]`(resource.clone(), ...)`, written straight from the borrowed
/// resource: the write path serializes every resource once, and cloning it only to stamp it
/// was a large part of that cost. The bytes are exactly those of the stamped map, key order
/// included (see [`StampedKeys`]).
pub fn stamped_json(
    resource: &Map<String, Value>,
    id: &str,
    version: u64,
    last_updated: &str,
) -> serde_json::Result<Vec<u8>> {
    let version = version.to_string();
    serde_json::to_vec(&Stamped {
        resource,
        id,
        version: &version,
        last_updated,
    })
}

struct Stamped<'a> {
    resource: &'a Map<String, Value>,
    id: &'a str,
    version: &'a str,
    last_updated: &'a str,
}

/// The keys [`stamp`] keeps after `resourceType`, `id` and `meta`, in the order it leaves them.
/// It takes those three out with `Map::remove`, which (with `preserve_order`) moves the last
/// entry into the hole each leaves, so this replays the same three swaps on a list of borrowed
/// entries.
struct StampedKeys<'a>(Vec<(&'a String, &'a Value)>);

impl<'a> StampedKeys<'a> {
    fn of(resource: &'a Map<String, Value>) -> Self {
        let mut entries: Vec<(&String, &Value)> = resource.iter().collect();
        for key in ["resourceType", "id", "meta"] {
            if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
                entries.swap_remove(i);
            }
        }
        StampedKeys(entries)
    }
}

impl serde::Serialize for Stamped<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let rest = StampedKeys::of(self.resource);
        let resource_type = self.resource.get("resourceType");
        let mut map =
            serializer.serialize_map(Some(rest.0.len() + 2 + resource_type.iter().len()))?;
        if let Some(t) = resource_type {
            map.serialize_entry("resourceType", t)?;
        }
        map.serialize_entry("id", self.id)?;
        map.serialize_entry(
            "meta",
            &StampedMeta {
                sent: match self.resource.get("meta") {
                    Some(Value::Object(m)) => Some(m),
                    _ => None,
                },
                version: self.version,
                last_updated: self.last_updated,
            },
        )?;
        for (k, v) in rest.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct StampedMeta<'a> {
    sent: Option<&'a Map<String, Value>>,
    version: &'a str,
    last_updated: &'a str,
}

impl serde::Serialize for StampedMeta<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let kept = || {
            self.sent
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "versionId" && *k != "lastUpdated")
        };
        let mut map = serializer.serialize_map(Some(2 + kept().count()))?;
        map.serialize_entry("versionId", self.version)?;
        map.serialize_entry("lastUpdated", self.last_updated)?;
        for (k, v) in kept() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Whether `incoming` (a resource about to be written) says the same as `stored` (the current
/// stored version): equal apart from `id`, `meta.versionId` and `meta.lastUpdated`, which the
/// server sets. An update that changes nothing keeps the current version (as HAPI and Firely
/// do), which is what makes re-importing the same data a no-op. A `meta` that is not an object
/// counts as no `meta`; key order does not matter.
pub fn same_content(stored: &Map<String, Value>, incoming: &Map<String, Value>) -> bool {
    fn content(resource: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
        resource.iter().filter(|(k, _)| *k != "id" && *k != "meta")
    }
    fn meta(resource: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
        let meta = match resource.get("meta") {
            Some(Value::Object(meta)) => Some(meta),
            _ => None,
        };
        meta.into_iter()
            .flatten()
            .filter(|(k, _)| *k != "versionId" && *k != "lastUpdated")
    }
    let incoming_meta = match incoming.get("meta") {
        Some(Value::Object(meta)) => Some(meta),
        _ => None,
    };
    // Equal sizes, and every entry of one found equal in the other.
    content(stored).count() == content(incoming).count()
        && content(stored).all(|(k, v)| incoming.get(k) == Some(v))
        && meta(stored).count() == meta(incoming).count()
        && meta(stored).all(|(k, v)| incoming_meta.and_then(|m| m.get(k)) == Some(v))
}

/// The body of a deletion event (see [`crate::resource::RESOURCE_DELETED`]).
pub fn deletion_body(resource_type: &str, id: &str) -> Value {
    let mut m = Map::new();
    m.insert(
        "resourceType".into(),
        Value::String(resource_type.to_owned()),
    );
    m.insert("id".into(), Value::String(id.to_owned()));
    Value::Object(m)
}

/// A weak ETag for a version: `W/"3"`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The version an `If-Match` / `If-None-Match` / `Bundle.entry.request.ifMatch` value names:
/// `W/"3"`, `"3"` or a bare `3`. None when it is not a version number.
pub fn parse_etag(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v.trim_matches('"');
    v.parse().ok()
}

/// The HTTP methods a Bundle entry may carry, in FHIR transaction processing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntryMethod {
    Delete,
    Post,
    Put,
    Patch,
    Get,
    Head,
}

impl EntryMethod {
    pub fn parse(method: &str) -> Option<Self> {
        Some(match method {
            "DELETE" => Self::Delete,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "DELETE",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Get => "GET",
            Self::Head => "HEAD",
        }
    }

    /// The processing rank FHIR R4 gives a transaction (http.html#trules): deletes, then
    /// creates, then updates/patches, then reads.
    pub fn rank(self) -> u8 {
        match self {
            Self::Delete => 0,
            Self::Post => 1,
            Self::Put | Self::Patch => 2,
            Self::Get | Self::Head => 3,
        }
    }
}

/// The indices of `methods` in transaction processing order (stable within a rank).
pub fn processing_order(methods: &[EntryMethod]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..methods.len()).collect();
    order.sort_by_key(|&i| methods[i].rank());
    order
}

/// Replaces, anywhere in `value`, every string that is exactly one of `map`'s keys (a
/// transaction entry's `fullUrl`, e.g. `urn:uuid:...`) by its value (`Patient/123`). Also
/// rewrites a `reference` whose text starts with a key followed by `/_history` or `#`, so a
/// versioned or contained-fragment reference to a new resource resolves too. Returns how many
/// strings were rewritten.
pub fn rewrite_references(value: &mut Value, map: &HashMap<String, String>) -> usize {
    if map.is_empty() {
        return 0;
    }
    let mut count = 0;
    rewrite(value, map, &mut count);
    count
}

fn rewrite(value: &mut Value, map: &HashMap<String, String>, count: &mut usize) {
    match value {
        Value::String(s) => {
            if let Some(new) = map.get(s.as_str()) {
                *s = new.clone();
                *count += 1;
            } else if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
                // `urn:uuid:X#frag` or `urn:uuid:X/_history/1`: the id part is the key.
                if let Some(cut) = s.find(['#', '/']) {
                    if let Some(new) = map.get(&s[..cut]) {
                        *s = format!("{new}{}", &s[cut..]);
                        *count += 1;
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite(item, map, count);
            }
        }
        Value::Object(fields) => {
            for (_, v) in fields.iter_mut() {
                rewrite(v, map, count);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn same_content_ignores_what_the_server_stamps_and_nothing_else() {
        let stored = json!({"resourceType": "Patient", "id": "p1",
            "meta": {"versionId": "3", "lastUpdated": "2026-01-01T00:00:00Z"},
            "gender": "female"});
        let stored = stored.as_object().unwrap();
        let same = json!({"resourceType": "Patient", "id": "p1", "gender": "female"});
        assert!(same_content(stored, same.as_object().unwrap()));
        let with_empty_meta = json!({"resourceType": "Patient", "meta": {"versionId": "9"},
            "gender": "female"});
        assert!(same_content(stored, with_empty_meta.as_object().unwrap()));
        let changed = json!({"resourceType": "Patient", "id": "p1", "gender": "male"});
        assert!(!same_content(stored, changed.as_object().unwrap()));
        let tagged = json!({"resourceType": "Patient", "id": "p1", "gender": "female",
            "meta": {"tag": [{"code": "x"}]}});
        assert!(!same_content(stored, tagged.as_object().unwrap()));
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn stamping_sets_id_and_meta_and_keeps_everything_else() {
        let Value::Object(m) = json!({"gender": "male", "meta": {"versionId": "9", "profile": ["p"]}, "id": "old", "resourceType": "Patient"})
        else {
            unreachable!()
        };
        let out = stamp(m, "new", 2, "2026-01-01T00:00:00.000Z");
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"resourceType":"Patient","id":"new","meta":{"versionId":"2","lastUpdated":"2026-01-01T00:00:00.000Z","profile":["p"]},"gender":"male"}"#
        );
    }

    #[test]
    fn stamped_json_is_the_text_of_the_stamped_map() {
        let cases = [
            json!({"gender": "male", "meta": {"versionId": "9", "profile": ["p"]}, "id": "old", "resourceType": "Patient"}),
            json!({"resourceType": "Patient", "id": "p", "a": 1, "b": [2], "c": {"d": 3}, "e": "f"}),
            json!({"a": 1, "b": 2, "resourceType": "Observation", "c": 3, "meta": "not an object", "d": 4}),
            json!({"z": 1, "meta": {"lastUpdated": "x", "tag": [{"code": "t"}], "versionId": "1", "source": "s"}, "y": 2, "x": 3}),
            json!({"id": "only"}),
            json!({}),
            json!({"meta": {}, "resourceType": 7, "q": null}),
        ];
        for case in cases {
            let Value::Object(m) = case else {
                unreachable!()
            };
            let expected =
                serde_json::to_vec(&stamp(m.clone(), "new", 12, "2026-01-01T00:00:00.000Z"))
                    .unwrap();
            let got = stamped_json(&m, "new", 12, "2026-01-01T00:00:00.000Z").unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn same_content_is_blind_to_order_and_to_a_meta_that_is_not_an_object() {
        let same =
            |x: &Value, y: &Value| same_content(x.as_object().unwrap(), y.as_object().unwrap());
        let a = json!({"resourceType": "Patient", "id": "1", "gender": "male", "meta": {"versionId": "1", "tag": [1]}, "x": 1});
        let b = json!({"x": 1, "meta": {"tag": [1], "lastUpdated": "t"}, "gender": "male", "resourceType": "Patient"});
        assert!(same(&a, &b));
        let c = json!({"resourceType": "Patient", "meta": "x"});
        let d = json!({"resourceType": "Patient", "meta": {"versionId": "2"}});
        assert!(same(&c, &d));
        let e = json!({"resourceType": "Patient", "extra": null});
        assert!(!same(&c, &e));
        assert!(!same(&e, &c));
        let f = json!({"resourceType": "Patient", "meta": {"tag": [2]}});
        assert!(!same(&a, &f));
        assert!(!same(&d, &f));
    }

    #[test]
    fn etags_round_trip_weak_strong_and_bare() {
        assert_eq!(etag(3), "W/\"3\"");
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("7"), Some(7));
        assert_eq!(parse_etag("W/\"x\""), None);
    }

    #[test]
    fn transaction_order_is_delete_post_put_get() {
        use EntryMethod::*;
        let methods = [Get, Put, Post, Delete, Patch, Post];
        assert_eq!(processing_order(&methods), vec![3, 2, 5, 1, 4, 0]);
    }

    #[test]
    fn urn_uuid_references_are_rewritten_anywhere() {
        let mut map = HashMap::new();
        map.insert("urn:uuid:a".to_owned(), "Patient/1".to_owned());
        let mut v = json!({
            "subject": {"reference": "urn:uuid:a"},
            "contained": [{"x": ["urn:uuid:a", "urn:uuid:b"]}],
            "versioned": "urn:uuid:a/_history/1",
        });
        assert_eq!(rewrite_references(&mut v, &map), 3);
        assert_eq!(v["subject"]["reference"], "Patient/1");
        assert_eq!(v["contained"][0]["x"][1], "urn:uuid:b");
        assert_eq!(v["versioned"], "Patient/1/_history/1");
    }
}
