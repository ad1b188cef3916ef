//! US Core profile constraints: evaluates a profile's constraint tree (cardinality, fixed and
//! pattern values, required bindings, value/pattern-discriminated slices) over a resource that
//! already passed the structural walk.

use serde_json::Value;

use super::{binding, Issue, IssueCode};
use crate::fhir::profiles::{profile, ProfileNode};

/// Checks every profile listed in `meta.profile`.
pub(super) fn check_claimed_profiles(
    resource: &Value,
    resource_type: &str,
    issues: &mut Vec<Issue>,
) {
    let claimed = resource
        .get("meta")
        .and_then(|m| m.get("profile"))
        .and_then(Value::as_array);
    for url in claimed.into_iter().flatten().filter_map(Value::as_str) {
        check_profile(resource, resource_type, url, issues);
    }
}

pub(super) fn check_profile(
    resource: &Value,
    resource_type: &str,
    url: &str,
    issues: &mut Vec<Issue>,
) {
    let Some(p) = profile(url) else {
        issues.push(Issue::warning(
            IssueCode::NotSupported,
            format!("{resource_type}.meta.profile"),
            format!("Profile {url} is not known to this server; validated against the base specification only"),
        ));
        return;
    };
    if p.resource_type != resource_type {
        issues.push(Issue::error(
            IssueCode::Invalid,
            format!("{resource_type}.meta.profile"),
            format!(
                "Profile {url} applies to {}, not {resource_type}",
                p.resource_type
            ),
        ));
        return;
    }
    let mut ctx = Ctx {
        profile: &p.title,
        issues,
    };
    ctx.children(&p.constraints, resource, resource_type);
}

struct Ctx<'a> {
    profile: &'a str,
    issues: &'a mut Vec<Issue>,
}

impl Ctx<'_> {
    fn error(&mut self, code: IssueCode, expr: String, message: String) {
        self.issues.push(Issue::error(
            code,
            expr,
            format!("{} ({})", message, self.profile),
        ));
    }

    /// Applies `node`'s children to one instance (an object) at `expr`.
    fn children(&mut self, node: &ProfileNode, instance: &Value, expr: &str) {
        let Value::Object(_) = instance else { return };
        for child in &node.children {
            let values = values_of(instance, &child.name, expr);
            self.node(child, &values, expr);
        }
    }

    /// Applies `node` to all the values it names under one parent.
    fn node(&mut self, node: &ProfileNode, values: &[(String, &Value)], parent_expr: &str) {
        let shown = node.name.trim_end_matches("[x]");
        if (values.len() as u64) < u64::from(node.min) {
            let message = if values.is_empty() {
                format!("Missing required element '{}'", node.name)
            } else {
                format!(
                    "'{}' needs at least {} item(s), found {}",
                    node.name,
                    node.min,
                    values.len()
                )
            };
            self.error(
                IssueCode::Required,
                format!("{parent_expr}.{shown}"),
                message,
            );
        }
        if !node.max.allows(values.len()) {
            self.error(
                IssueCode::Structure,
                format!("{parent_expr}.{shown}"),
                format!(
                    "'{}' allows at most {} item(s), found {}",
                    node.name,
                    node.max,
                    values.len()
                ),
            );
        }
        for (expr, value) in values {
            if let Some(fixed) = &node.fixed {
                if *value != fixed {
                    self.error(
                        IssueCode::Value,
                        expr.clone(),
                        format!("Value must be exactly {fixed}"),
                    );
                }
            }
            if let Some(pattern) = &node.pattern {
                if !matches_pattern(value, pattern) {
                    self.error(
                        IssueCode::Value,
                        expr.clone(),
                        format!("Value must match the pattern {pattern}"),
                    );
                }
            }
            if let Some(vs) = &node.binding {
                if let Some(message) = binding::check(vs, value) {
                    self.error(IssueCode::CodeInvalid, expr.clone(), message);
                }
            }
            self.children(node, value, expr);
        }
        for slice in &node.slices {
            let members: Vec<(String, &Value)> = values
                .iter()
                .filter(|(_, v)| in_slice(slice, v))
                .map(|(e, v)| (e.clone(), *v))
                .collect();
            if (members.len() as u64) < u64::from(slice.min) {
                self.error(
                    IssueCode::Required,
                    format!("{parent_expr}.{shown}"),
                    format!(
                        "'{}' needs at least {} item(s) matching slice '{}' ({})",
                        node.name,
                        slice.min,
                        slice.name,
                        describe_tests(slice)
                    ),
                );
            }
            if !slice.max.allows(members.len()) {
                self.error(
                    IssueCode::Structure,
                    format!("{parent_expr}.{shown}"),
                    format!(
                        "'{}' allows at most {} item(s) in slice '{}', found {}",
                        node.name,
                        slice.max,
                        slice.name,
                        members.len()
                    ),
                );
            }
            for (expr, member) in &members {
                self.children(slice, member, expr);
            }
        }
    }
}

/// The values of `name` in `instance` with their locations; `value[x]` matches any `valueFoo`.
/// Arrays are flattened; nulls (placeholders in primitive arrays) are skipped.
fn values_of<'v>(instance: &'v Value, name: &str, expr: &str) -> Vec<(String, &'v Value)> {
    let Value::Object(obj) = instance else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let choice_stem = name.strip_suffix("[x]");
    for (key, value) in obj {
        let matches = match choice_stem {
            Some(stem) => key
                .strip_prefix(stem)
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| c.is_ascii_uppercase()),
            None => key == name,
        };
        if !matches {
            continue;
        }
        // A primitive may carry only extensions (`_questionnaire`): it is present all the same.
        let twin = obj.get(&format!("_{key}"));
        match value {
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    if !v.is_null() {
                        out.push((format!("{expr}.{key}[{i}]"), v));
                    } else if let Some(t) = twin.and_then(|t| t.get(i)).filter(|t| !t.is_null()) {
                        out.push((format!("{expr}._{key}[{i}]"), t));
                    }
                }
            }
            Value::Null => {}
            v => out.push((format!("{expr}.{key}"), v)),
        }
    }
    if choice_stem.is_none() && !obj.contains_key(name) {
        match obj.get(&format!("_{name}")) {
            Some(Value::Array(items)) => out.extend(
                items
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(i, v)| (format!("{expr}._{name}[{i}]"), v)),
            ),
            Some(Value::Null) | None => {}
            Some(v) => out.push((format!("{expr}._{name}"), v)),
        }
    }
    out
}

/// Does `value` belong to the slice: each test's path holds a value matching the test value?
fn in_slice(slice: &ProfileNode, value: &Value) -> bool {
    if let Some(vs) = &slice.member_binding {
        return binding::check(vs, value).is_none();
    }
    !slice.tests.is_empty()
        && slice.tests.iter().all(|(path, expected)| {
            let mut current = vec![value];
            for seg in path.split('.').filter(|s| !s.is_empty()) {
                current = current
                    .into_iter()
                    .flat_map(|v| values_of(v, seg, "").into_iter().map(|(_, x)| x))
                    .collect();
            }
            current.into_iter().any(|v| matches_pattern(v, expected))
        })
}

/// FHIR pattern semantics: every property in the pattern is present with a matching value;
/// each item of a pattern array matches some item of the value's array.
fn matches_pattern(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| matches_pattern(vv, pv))),
        (Value::Array(v), Value::Array(p)) => p
            .iter()
            .all(|pi| v.iter().any(|vi| matches_pattern(vi, pi))),
        // A single pattern item against an array value: any item matches.
        (Value::Array(v), p) => v.iter().any(|vi| matches_pattern(vi, p)),
        (v, p) => v == p,
    }
}

fn describe_tests(slice: &ProfileNode) -> String {
    if let Some(vs) = &slice.member_binding {
        return format!("coded from {vs}");
    }
    slice
        .tests
        .iter()
        .map(|(path, v)| {
            if path.is_empty() {
                v.to_string()
            } else {
                format!("{path} = {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pattern_matching_follows_fhir_semantics() {
        let pattern = json!({"coding": [{"system": "http://loinc.org", "code": "85354-9"}]});
        let value = json!({"coding": [
            {"system": "http://snomed.info/sct", "code": "1"},
            {"system": "http://loinc.org", "code": "85354-9", "display": "BP"}
        ], "text": "BP"});
        assert!(matches_pattern(&value, &pattern));
        let other = json!({"coding": [{"system": "http://loinc.org", "code": "8480-6"}]});
        assert!(!matches_pattern(&other, &pattern));
    }

    #[test]
    fn choice_names_match_any_type() {
        let obs = json!({"valueQuantity": {"value": 1}, "value": 2, "valueless": 3});
        let v = values_of(&obs, "value[x]", "Observation");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, "Observation.valueQuantity");
    }
}
