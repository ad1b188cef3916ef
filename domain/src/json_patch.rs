//! JSON Patch (RFC 6902) over JSON Pointers (RFC 6901): what FHIR's `PATCH [type]/[id]` takes
//! with `Content-Type: application/json-patch+json`.
//!
//! A patch is applied to a copy and either every operation succeeds or the document is left as
//! it was. Errors name the operation (by index and op) and its pointer, never the values: a
//! value may carry PHI.

use serde_json::Value;

/// Why a patch could not be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// One operation of a patch document.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    Add { path: String, value: Value },
    Remove { path: String },
    Replace { path: String, value: Value },
    Move { from: String, path: String },
    Copy { from: String, path: String },
    Test { path: String, value: Value },
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::Add { .. } => "add",
            Operation::Remove { .. } => "remove",
            Operation::Replace { .. } => "replace",
            Operation::Move { .. } => "move",
            Operation::Copy { .. } => "copy",
            Operation::Test { .. } => "test",
        }
    }

    fn path(&self) -> &str {
        match self {
            Operation::Add { path, .. }
            | Operation::Remove { path }
            | Operation::Replace { path, .. }
            | Operation::Move { path, .. }
            | Operation::Copy { path, .. }
            | Operation::Test { path, .. } => path,
        }
    }
}

/// Reads a patch document: a JSON array of operation objects.
pub fn parse(document: &Value) -> Result<Vec<Operation>, PatchError> {
    let Value::Array(items) = document else {
        return Err(PatchError(
            "a JSON Patch document must be a JSON array of operations".into(),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_operation(item).map_err(|e| PatchError(format!("operation {i}: {e}")))
        })
        .collect()
}

fn parse_operation(item: &Value) -> Result<Operation, String> {
    let Value::Object(o) = item else {
        return Err("an operation must be a JSON object".into());
    };
    let text = |name: &str| -> Result<String, String> {
        let s = o
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("\"{name}\" must be a string"))?;
        if name != "op" && !s.is_empty() && !s.starts_with('/') {
            return Err(format!("\"{name}\" must be a JSON Pointer starting with /"));
        }
        Ok(s.to_owned())
    };
    let value = || -> Result<Value, String> {
        o.get("value")
            .cloned()
            .ok_or_else(|| "\"value\" is required".to_owned())
    };
    Ok(match text("op")?.as_str() {
        "add" => Operation::Add {
            path: text("path")?,
            value: value()?,
        },
        "remove" => Operation::Remove {
            path: text("path")?,
        },
        "replace" => Operation::Replace {
            path: text("path")?,
            value: value()?,
        },
        "move" => Operation::Move {
            from: text("from")?,
            path: text("path")?,
        },
        "copy" => Operation::Copy {
            from: text("from")?,
            path: text("path")?,
        },
        "test" => Operation::Test {
            path: text("path")?,
            value: value()?,
        },
        other => {
            let shown: String = other.chars().take(20).collect();
            return Err(format!(
                "op {shown:?} is not one of add, remove, replace, move, copy, test"
            ));
        }
    })
}

/// Applies `operations` in order to a copy of `document`; the result only if all succeed.
pub fn apply(document: &Value, operations: &[Operation]) -> Result<Value, PatchError> {
    let mut doc = document.clone();
    for (i, op) in operations.iter().enumerate() {
        apply_one(&mut doc, op).map_err(|why| {
            let shown: String = op.path().chars().take(200).collect();
            PatchError(format!("operation {i} ({} {shown}): {why}", op.name()))
        })?;
    }
    Ok(doc)
}

fn apply_one(doc: &mut Value, op: &Operation) -> Result<(), String> {
    match op {
        Operation::Add { path, value } => add(doc, path, value.clone()),
        Operation::Remove { path } => remove(doc, path).map(drop),
        Operation::Replace { path, value } => {
            *resolve_mut(doc, path)? = value.clone();
            Ok(())
        }
        Operation::Move { from, path } => {
            if path.starts_with(from.as_str())
                && path.len() > from.len()
                && path.as_bytes()[from.len()] == b'/'
            {
                return Err("a value cannot be moved into one of its own children".into());
            }
            let value = remove(doc, from)?;
            add(doc, path, value)
        }
        Operation::Copy { from, path } => {
            let value = resolve_mut(doc, from)?.clone();
            add(doc, path, value)
        }
        Operation::Test { path, value } => {
            if *resolve_mut(doc, path)? == *value {
                Ok(())
            } else {
                Err("the test failed: the value differs".into())
            }
        }
    }
}

/// The reference tokens of a pointer, unescaped (`~1` is `/`, `~0` is `~`).
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err("a JSON Pointer must start with /".into());
    };
    rest.split('/')
        .map(|t| {
            if t.contains('~') && t.replace("~0", "").replace("~1", "").contains('~') {
                return Err("a ~ in a JSON Pointer must be followed by 0 or 1".to_owned());
            }
            Ok(t.replace("~1", "/").replace("~0", "~"))
        })
        .collect()
}

fn array_index(token: &str, len: usize, allow_end: bool) -> Result<usize, String> {
    if token == "-" && allow_end {
        return Ok(len);
    }
    let valid = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    let index: usize = if valid {
        token.parse().map_err(|_| "the array index is too large")?
    } else {
        return Err("an array index must be a number without leading zeros".into());
    };
    let limit = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if index > limit || (!allow_end && len == 0) {
        return Err("the array index is out of range".into());
    }
    Ok(index)
}

fn resolve_mut<'a>(doc: &'a mut Value, pointer: &str) -> Result<&'a mut Value, String> {
    walk(doc, tokens(pointer)?)
}

/// The value `tokens` lead to from `doc`.
fn walk(doc: &mut Value, tokens: Vec<String>) -> Result<&mut Value, String> {
    let mut current = doc;
    for token in tokens {
        current = match current {
            Value::Object(map) => map
                .get_mut(&token)
                .ok_or_else(|| "the path does not exist".to_owned())?,
            Value::Array(items) => {
                let i = array_index(&token, items.len(), false)?;
                &mut items[i]
            }
            _ => return Err("the path goes through a value that is not an object or array".into()),
        };
    }
    Ok(current)
}

/// The container the last token of `pointer` lives in, and that token.
fn parent_mut<'a>(doc: &'a mut Value, pointer: &str) -> Result<(&'a mut Value, String), String> {
    let mut all = tokens(pointer)?;
    let Some(last) = all.pop() else {
        return Err("the whole document cannot be the target".into());
    };
    Ok((walk(doc, all)?, last))
}

fn add(doc: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    if pointer.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, pointer)?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let i = array_index(&last, items.len(), true)?;
            items.insert(i, value);
            Ok(())
        }
        _ => Err("the parent of the path is not an object or array".into()),
    }
}

fn remove(doc: &mut Value, pointer: &str) -> Result<Value, String> {
    let (parent, last) = parent_mut(doc, pointer)?;
    match parent {
        Value::Object(map) => map
            .shift_remove(&last)
            .ok_or_else(|| "the path does not exist".to_owned()),
        Value::Array(items) => {
            let i = array_index(&last, items.len(), false)?;
            Ok(items.remove(i))
        }
        _ => Err("the parent of the path is not an object or array".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn run(doc: Value, patch: Value) -> Result<Value, PatchError> {
        apply(&doc, &parse(&patch)?)
    }

    #[test]
    fn the_rfc_6902_appendix_examples_hold() {
        assert_eq!(
            run(
                json!({"foo": "bar"}),
                json!([{"op": "add", "path": "/baz", "value": "qux"}])
            ),
            Ok(json!({"foo": "bar", "baz": "qux"}))
        );
        assert_eq!(
            run(
                json!({"foo": ["bar", "baz"]}),
                json!([{"op": "add", "path": "/foo/1", "value": "qux"}])
            ),
            Ok(json!({"foo": ["bar", "qux", "baz"]}))
        );
        assert_eq!(
            run(
                json!({"baz": "qux", "foo": "bar"}),
                json!([{"op": "remove", "path": "/baz"}])
            ),
            Ok(json!({"foo": "bar"}))
        );
        assert_eq!(
            run(
                json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
                json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])
            ),
            Ok(json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}))
        );
        assert_eq!(
            run(
                json!({"foo": ["a", "b"]}),
                json!([{"op": "add", "path": "/foo/-", "value": "c"}])
            ),
            Ok(json!({"foo": ["a", "b", "c"]}))
        );
        assert_eq!(
            run(
                json!({"a/b": 1, "m~n": 2}),
                json!([{"op": "replace", "path": "/a~1b", "value": 3}, {"op": "test", "path": "/m~0n", "value": 2}])
            ),
            Ok(json!({"a/b": 3, "m~n": 2}))
        );
    }

    #[test]
    fn a_failing_operation_leaves_nothing_applied_and_names_itself_without_values() {
        let doc = json!({"name": "secret-name", "status": "active"});
        let err = run(
            doc.clone(),
            json!([{"op": "replace", "path": "/status", "value": "x"},
                   {"op": "test", "path": "/name", "value": "other"}]),
        )
        .unwrap_err();
        assert!(err.0.starts_with("operation 1 (test /name)"), "{err}");
        assert!(!err.0.contains("secret-name"));
        assert!(run(doc.clone(), json!([{"op": "remove", "path": "/missing"}])).is_err());
        assert!(run(
            doc.clone(),
            json!([{"op": "add", "path": "/a/b", "value": 1}])
        )
        .is_err());
        assert!(run(
            json!({"x": [1]}),
            json!([{"op": "remove", "path": "/x/01"}])
        )
        .is_err());
        assert!(run(json!({"x": [1]}), json!([{"op": "remove", "path": "/x/1"}])).is_err());
        assert!(run(
            json!({"x": {}}),
            json!([{"op": "move", "from": "/x", "path": "/x/y"}])
        )
        .is_err());
        assert!(parse(&json!({"op": "add"})).is_err());
        assert!(parse(&json!([{"op": "frobnicate", "path": "/a"}])).is_err());
        assert!(parse(&json!([{"op": "add", "path": "a", "value": 1}])).is_err());
        assert!(parse(&json!([{"op": "add", "path": "/a"}])).is_err());
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            "[a-z~/]{0,6}".prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    fn document() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z~/]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn op() -> impl Strategy<Value = Value> {
        let pointer = prop::collection::vec("[a-z0-9~/-]{0,3}", 0..3)
            .prop_map(|t| t.iter().map(|s| format!("/{s}")).collect::<String>());
        (
            prop_oneof![
                Just("add"),
                Just("remove"),
                Just("replace"),
                Just("move"),
                Just("copy"),
                Just("test")
            ],
            pointer.clone(),
            pointer,
            leaf(),
        )
            .prop_map(|(op, path, from, value)| {
                json!({"op": op, "path": path, "from": from, "value": value})
            })
    }

    proptest! {
        /// Any patch on any document either applies or fails cleanly, never panics; adding
        /// then removing the same new member gives the document back.
        #[test]
        fn patches_never_panic(doc in document(), ops in prop::collection::vec(op(), 0..5)) {
            if let Ok(parsed) = parse(&Value::Array(ops)) {
                let _ = apply(&doc, &parsed);
            }
        }

        #[test]
        fn add_then_remove_is_the_identity(doc in prop::collection::btree_map("[a-z]{1,4}", leaf(), 0..4), value in leaf()) {
            let doc = Value::Object(doc.into_iter().collect());
            let patch = json!([{"op": "add", "path": "/zz~1new", "value": value},
                               {"op": "remove", "path": "/zz~1new"}]);
            prop_assert_eq!(apply(&doc, &parse(&patch).unwrap()).unwrap(), doc);
        }
    }
}
