//! US Core profile constraints: evaluates a profile's constraint tree (cardinality, fixed and
//! pattern values, narrowed choice types, required bindings, value/pattern/binding-discriminated
//! slices) over a resource that already passed the structural walk. US Core extension
//! definitions are applied the same way wherever their url is used.

use serde_json::Value;

use super::location::Location;
use super::{binding, Issue, IssueCode};
use crate::fhir::invariants;
use crate::fhir::profiles::{profile, us_core_extension, ProfileNode};

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
    // The core StructureDefinition of a type is a valid claim: the base rules already apply.
    if let Some(base) = url
        .split('|')
        .next()
        .and_then(|u| u.strip_prefix("http://hl7.org/fhir/StructureDefinition/"))
    {
        if crate::fhir::definitions::is_resource_type(base) {
            if base != resource_type {
                issues.push(Issue::error(
                    IssueCode::Invalid,
                    format!("{resource_type}.meta.profile"),
                    format!("Profile {url} applies to {base}, not {resource_type}"),
                ));
            }
            return;
        }
    }
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
    ctx.children(&p.constraints, resource, &Location::Root(resource_type));
    ctx.invariants(&p.url, resource, resource_type);
}

/// Checks every use of a US Core extension, anywhere in the resource, against its definition.
pub(super) fn check_extensions(resource: &Value, resource_type: &str, issues: &mut Vec<Issue>) {
    walk_extensions(resource, &Location::Root(resource_type), issues, 0);
}

fn walk_extensions(value: &Value, at: &Location<'_>, issues: &mut Vec<Issue>, depth: usize) {
    // The structural walk already reported anything deeper as too costly.
    if depth > 64 {
        return;
    }
    match value {
        Value::Object(obj) => {
            for (key, child) in obj {
                if key == "extension" || key == "modifierExtension" {
                    for (i, ext) in child.as_array().into_iter().flatten().enumerate() {
                        let ext_at = at.member(key, Some(i));
                        let url = ext.get("url").and_then(Value::as_str);
                        if let Some(def) = url.and_then(us_core_extension) {
                            let mut ctx = Ctx {
                                profile: &def.name,
                                issues,
                            };
                            ctx.children(&def.constraints, ext, &ext_at);
                        }
                        walk_extensions(ext, &ext_at, issues, depth + 1);
                    }
                } else if matches!(child, Value::Object(_) | Value::Array(_)) {
                    walk_extensions(child, &at.key(key), issues, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if matches!(item, Value::Object(_) | Value::Array(_)) {
                    walk_extensions(item, &at.item(i), issues, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// One value found under a profile node, with its JSON key and location.
struct Located<'v, 'p> {
    at: Location<'p>,
    key: &'v str,
    value: &'v Value,
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

    /// The FHIRPath invariants the profile adds (`us-core-2`...), on every value of their path.
    fn invariants(&mut self, url: &str, resource: &Value, resource_type: &str) {
        for inv in invariants::for_profile(url) {
            let Some(rest) = inv.path.strip_prefix(resource_type) else {
                continue;
            };
            // (location, JSON key, value); few, so the locations are written out.
            let mut values: Vec<(String, &str, &Value)> =
                vec![(resource_type.to_owned(), "", resource)];
            for seg in rest.split('.').filter(|s| !s.is_empty()) {
                values = values
                    .iter()
                    .flat_map(|(expr, _, value)| {
                        let at = Location::Root(expr);
                        values_of(value, seg, &at)
                            .into_iter()
                            .map(|l| (l.at.to_string(), l.key, l.value))
                            .collect::<Vec<_>>()
                    })
                    .collect();
            }
            // For a choice element, the JSON key names the type (`effectiveDateTime`).
            let stem = inv.path.rsplit('.').next().unwrap_or("");
            let stem = stem.strip_suffix("[x]");
            for (expr, key, value) in &values {
                let choice = stem.and_then(|s| key.strip_prefix(s));
                if let Ok(Some(false)) = inv.compiled.check(value, choice, resource, resource) {
                    let message = format!("{}: {} ({})", inv.key, inv.human, self.profile);
                    self.issues.push(if inv.severity == "error" {
                        Issue::error(IssueCode::Invariant, expr.clone(), message)
                    } else {
                        Issue::warning(IssueCode::Invariant, expr.clone(), message)
                    });
                }
            }
        }
    }

    /// Applies `node`'s children to one instance (an object) at `at`.
    fn children(&mut self, node: &ProfileNode, instance: &Value, at: &Location<'_>) {
        let Value::Object(_) = instance else { return };
        for child in &node.children {
            let values = values_of(instance, &child.name, at);
            self.node(child, &values, at);
        }
    }

    /// Applies `node` to all the values it names under one parent.
    fn node(&mut self, node: &ProfileNode, values: &[Located<'_, '_>], parent: &Location<'_>) {
        let shown = node.name.trim_end_matches("[x]");
        let at = parent.key(shown);
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
            self.error(IssueCode::Required, at.to_string(), message);
        }
        if !node.max.allows(values.len()) {
            let message = if node.max == crate::fhir::definitions::Max::Bounded(0) {
                format!("'{}' is not allowed here", node.name)
            } else {
                format!(
                    "'{}' allows at most {} item(s), found {}",
                    node.name,
                    node.max,
                    values.len()
                )
            };
            self.error(IssueCode::Structure, at.to_string(), message);
        }
        for v in values {
            if !node.types.is_empty() {
                let stem = node.name.trim_end_matches("[x]");
                let suffix = v
                    .key
                    .trim_start_matches('_')
                    .strip_prefix(stem)
                    .unwrap_or("");
                if !node.types.iter().any(|t| capitalized_eq(t, suffix)) {
                    self.error(
                        IssueCode::Structure,
                        v.at.to_string(),
                        format!(
                            "Type {suffix} is not allowed for '{}'; allowed: {}",
                            node.name,
                            node.types.join(", ")
                        ),
                    );
                }
            }
            if let Some(fixed) = &node.fixed {
                if v.value != fixed {
                    self.error(
                        IssueCode::Value,
                        v.at.to_string(),
                        format!("Value must be exactly {fixed}"),
                    );
                }
            }
            if let Some(pattern) = &node.pattern {
                if !matches_pattern(v.value, pattern) {
                    self.error(
                        IssueCode::Value,
                        v.at.to_string(),
                        format!("Value must match the pattern {pattern}"),
                    );
                }
            }
            if let Some(vs) = &node.binding {
                if let Some(message) = binding::check(vs, v.value) {
                    self.error(IssueCode::CodeInvalid, v.at.to_string(), message);
                }
            }
            self.children(node, v.value, &v.at);
        }
        for slice in &node.slices {
            let members: Vec<&Located<'_, '_>> =
                values.iter().filter(|v| in_slice(slice, v.value)).collect();
            if (members.len() as u64) < u64::from(slice.min) {
                self.error(
                    IssueCode::Required,
                    at.to_string(),
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
                    at.to_string(),
                    format!(
                        "'{}' allows at most {} item(s) in slice '{}', found {}",
                        node.name,
                        slice.max,
                        slice.name,
                        members.len()
                    ),
                );
            }
            for member in members {
                self.children(slice, member.value, &member.at);
            }
        }
    }
}

/// `code` with its first letter upper-cased equals `suffix` (`dateTime` ~ `DateTime`).
fn capitalized_eq(code: &str, suffix: &str) -> bool {
    let mut c = code.chars();
    let mut s = suffix.chars();
    match (c.next(), s.next()) {
        (Some(a), Some(b)) => a.to_ascii_uppercase() == b && c.as_str() == s.as_str(),
        _ => false,
    }
}

/// The values of `name` in `instance` with their locations; `value[x]` matches any `valueFoo`.
/// Arrays are flattened; nulls (placeholders in primitive arrays) are skipped, and a primitive
/// that has only extensions (`_questionnaire`) counts as present.
fn values_of<'v: 'p, 'p>(
    instance: &'v Value,
    name: &str,
    at: &'p Location<'p>,
) -> Vec<Located<'v, 'p>> {
    let Value::Object(obj) = instance else {
        return Vec::new();
    };
    // Most objects have no `_name` twins; then no lookup for them is needed.
    let has_twins = obj.keys().any(|k| k.starts_with('_'));
    let twin = |key: &str| {
        if has_twins {
            obj.get_key_value(&format!("_{key}"))
        } else {
            None
        }
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
        match value {
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    if !v.is_null() {
                        out.push(Located {
                            at: at.member(key, Some(i)),
                            key,
                            value: v,
                        });
                    } else if let Some((twin_key, t)) =
                        twin(key).and_then(|(k, t)| Some((k, t.get(i).filter(|t| !t.is_null())?)))
                    {
                        out.push(Located {
                            at: at.member(twin_key, Some(i)),
                            key,
                            value: t,
                        });
                    }
                }
            }
            Value::Null => {}
            v => out.push(Located {
                at: at.key(key),
                key,
                value: v,
            }),
        }
    }
    if choice_stem.is_none() && !obj.contains_key(name) {
        if let Some((key, twin)) = twin(name) {
            match twin {
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate().filter(|(_, v)| !v.is_null()) {
                        out.push(Located {
                            at: at.member(key, Some(i)),
                            key,
                            value: v,
                        });
                    }
                }
                Value::Null => {}
                v => out.push(Located {
                    at: at.key(key),
                    key,
                    value: v,
                }),
            }
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
            let nowhere = Location::Root("");
            let mut current = vec![value];
            for seg in path.split('.').filter(|s| !s.is_empty()) {
                current = current
                    .into_iter()
                    .flat_map(|v| values_of(v, seg, &nowhere).into_iter().map(|l| l.value))
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
        let root = Location::Root("Observation");
        let v = values_of(&obs, "value[x]", &root);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].at.to_string(), "Observation.valueQuantity");
        assert_eq!(v[0].key, "valueQuantity");
    }
}
