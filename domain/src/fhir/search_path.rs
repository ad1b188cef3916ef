//! The subset of FHIRPath that FHIR R4 and US Core search-parameter expressions use, compiled
//! once and evaluated against resource JSON: dotted paths over choice elements, unions (`|`),
//! `as T` / `.as(T)` / `.ofType(T)`, `.where(resolve() is T)`, `.where(field = 'literal')`,
//! `[0]` and `.first()`.
//!
//! Anything else (e.g. `Patient.deceased.exists() and ...`) does not compile, and the caller
//! decides what to do with such a parameter; every supported expression of the supported types
//! compiles today except those listed in the tests.

use serde_json::Value;

/// One step of a compiled path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A child element; for a choice element (`effective`) every `effectiveXxx` key matches.
    Field(String),
    /// Keep values of this FHIR type (after a choice element, or a resource's `resourceType`).
    OfType(String),
    /// Keep References that point at this resource type.
    ResolveIs(String),
    /// Keep objects whose `field` equals the string literal.
    WhereEquals(String, String),
    /// Keep only the first value.
    First,
}

/// A compiled search expression: a union of step sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    branches: Vec<Vec<Step>>,
}

/// A value found by a [`SearchPath`], with the FHIR type the JSON key told us (for choice
/// elements: `effectiveDateTime` -> `dateTime`), if any.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found<'v> {
    pub value: &'v Value,
    /// The capitalized type suffix of a choice key (`DateTime`, `Quantity`), when there was one.
    pub choice_type: Option<&'v str>,
}

impl SearchPath {
    /// Compiles a search expression rooted at a resource type (`Observation.code | ...`).
    /// Branches for other types are dropped. None when the expression uses unsupported syntax.
    pub fn compile(expression: &str, resource_type: &str) -> Option<SearchPath> {
        let mut branches = Vec::new();
        for branch in split_top_level(expression, '|') {
            let (text, of_type) = strip_as(branch.trim());
            let (head, rest) = match text.split_once('.') {
                Some((h, r)) => (h, Some(r)),
                None => (text, None),
            };
            if head != resource_type && head != "Resource" && head != "DomainResource" {
                continue;
            }
            let mut steps = match rest {
                Some(r) => parse_steps(r)?,
                None => Vec::new(),
            };
            if let Some(t) = of_type {
                steps.push(Step::OfType(t.to_owned()));
            }
            branches.push(steps);
        }
        (!branches.is_empty()).then_some(SearchPath { branches })
    }

    /// Compiles an expression relative to a context value (composite components: `value.as(Quantity)`).
    pub fn compile_relative(expression: &str) -> Option<SearchPath> {
        let mut branches = Vec::new();
        for branch in split_top_level(expression, '|') {
            let (text, of_type) = strip_as(branch.trim());
            let mut steps = parse_steps(text)?;
            if let Some(t) = of_type {
                steps.push(Step::OfType(t.to_owned()));
            }
            branches.push(steps);
        }
        (!branches.is_empty()).then_some(SearchPath { branches })
    }

    pub fn branches(&self) -> &[Vec<Step>] {
        &self.branches
    }

    /// All values the expression selects in `context` (a resource, or a composite's item).
    pub fn evaluate<'v>(&self, context: &'v Value) -> Vec<Found<'v>> {
        let mut out = Vec::new();
        for steps in &self.branches {
            let mut current = vec![Found {
                value: context,
                choice_type: None,
            }];
            for step in steps {
                current = apply(step, current);
                if current.is_empty() {
                    break;
                }
            }
            out.extend(current);
        }
        out
    }
}

fn apply<'v>(step: &Step, input: Vec<Found<'v>>) -> Vec<Found<'v>> {
    match step {
        Step::Field(name) => {
            let mut out = Vec::new();
            for f in input {
                let Value::Object(obj) = f.value else {
                    continue;
                };
                for (key, value) in obj {
                    let choice_type = if key == name {
                        None
                    } else {
                        match key.strip_prefix(name.as_str()) {
                            Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) => {
                                Some(rest)
                            }
                            _ => continue,
                        }
                    };
                    match value {
                        Value::Array(items) => out.extend(
                            items
                                .iter()
                                .filter(|v| !v.is_null())
                                .map(|value| Found { value, choice_type }),
                        ),
                        Value::Null => {}
                        value => out.push(Found { value, choice_type }),
                    }
                }
            }
            out
        }
        Step::OfType(t) => input
            .into_iter()
            .filter(|f| match f.choice_type {
                Some(suffix) => type_matches(t, suffix),
                None => f.value.get("resourceType").and_then(Value::as_str) == Some(t.as_str()),
            })
            .collect(),
        Step::ResolveIs(t) => input
            .into_iter()
            .filter(|f| reference_type(f.value).is_some_and(|rt| rt == t))
            .collect(),
        Step::WhereEquals(field, literal) => input
            .into_iter()
            .filter(|f| f.value.get(field).and_then(Value::as_str) == Some(literal.as_str()))
            .collect(),
        Step::First => input.into_iter().take(1).collect(),
    }
}

/// `dateTime` names the choice suffix `DateTime`.
fn type_matches(fhir_type: &str, suffix: &str) -> bool {
    let mut a = fhir_type.chars();
    let mut b = suffix.chars();
    match (a.next(), b.next()) {
        (Some(x), Some(y)) => x.to_ascii_uppercase() == y && a.as_str() == b.as_str(),
        _ => false,
    }
}

/// The resource type a Reference points at: its `type`, or the `Type/id` in `reference`
/// (relative or at the end of an absolute URL).
fn reference_type(reference: &Value) -> Option<&str> {
    if let Some(t) = reference.get("type").and_then(Value::as_str) {
        return Some(t);
    }
    let r = reference.get("reference")?.as_str()?;
    let r = r.split("/_history/").next().unwrap_or(r);
    let mut parts = r.rsplit('/');
    let _id = parts.next()?;
    let t = parts.next()?;
    t.starts_with(|c: char| c.is_ascii_uppercase()).then_some(t)
}

/// Splits at `sep` outside parentheses and quotes.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `(X.y as T)` or `X.y as T` -> (`X.y`, Some(T)).
fn strip_as(text: &str) -> (&str, Option<&str>) {
    let inner = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(text)
        .trim();
    match inner.rsplit_once(" as ") {
        Some((path, t)) if is_identifier(t.trim()) => (path.trim(), Some(t.trim())),
        _ => (inner, None),
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses `a.b.where(...).c[0].as(T)` into steps.
fn parse_steps(text: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for segment in split_top_level(text, '.') {
        let segment = segment.trim();
        let (name, rest) = match segment.find(['(', '[']) {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !is_identifier(name) {
            return None;
        }
        if let Some(args) = rest.strip_prefix('(') {
            let args = args.strip_suffix(')')?.trim();
            steps.push(function(name, args)?);
        } else if rest.is_empty() {
            steps.push(Step::Field(name.to_owned()));
        } else if rest == "[0]" {
            steps.push(Step::Field(name.to_owned()));
            steps.push(Step::First);
        } else {
            return None;
        }
    }
    Some(steps)
}

fn function(name: &str, args: &str) -> Option<Step> {
    match name {
        "as" | "ofType" if is_identifier(args) => Some(Step::OfType(args.to_owned())),
        "first" if args.is_empty() => Some(Step::First),
        "where" => {
            if let Some(t) = args.strip_prefix("resolve() is ") {
                let t = t.trim();
                return is_identifier(t).then(|| Step::ResolveIs(t.to_owned()));
            }
            let (field, literal) = args.split_once('=')?;
            let field = field.trim();
            let literal = literal.trim().strip_prefix('\'')?.strip_suffix('\'')?;
            is_identifier(field).then(|| Step::WhereEquals(field.to_owned(), literal.to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fhir::search_parameters::{search_parameters, searchable_types};
    use serde_json::json;

    fn values<'v>(expr: &str, rt: &str, resource: &'v Value) -> Vec<&'v Value> {
        SearchPath::compile(expr, rt)
            .expect("compiles")
            .evaluate(resource)
            .into_iter()
            .map(|f| f.value)
            .collect()
    }

    #[test]
    fn choice_elements_and_type_filters() {
        let obs = json!({"resourceType": "Observation", "effectiveDateTime": "2024-01-01",
            "valueQuantity": {"value": 1}});
        assert_eq!(
            values("Observation.effective", "Observation", &obs),
            vec![&json!("2024-01-01")]
        );
        assert_eq!(
            values("(Observation.value as Quantity)", "Observation", &obs).len(),
            1
        );
        assert!(values(
            "(Observation.value as CodeableConcept)",
            "Observation",
            &obs
        )
        .is_empty());
        assert_eq!(
            values("Observation.value.as(Quantity)", "Observation", &obs).len(),
            1
        );
    }

    #[test]
    fn where_clauses_and_unions() {
        let p = json!({"resourceType": "Patient", "telecom": [
            {"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}]});
        assert_eq!(
            values("Patient.telecom.where(system='phone')", "Patient", &p),
            vec![&json!({"system": "phone", "value": "1"})]
        );
        let e = json!({"resourceType": "Encounter", "subject": {"reference": "Patient/1"}});
        assert_eq!(
            values(
                "Encounter.subject.where(resolve() is Patient)",
                "Encounter",
                &e
            )
            .len(),
            1
        );
        assert!(values(
            "Encounter.subject.where(resolve() is Group)",
            "Encounter",
            &e
        )
        .is_empty());
        let expr = "AllergyIntolerance.patient | CarePlan.subject | Encounter.subject";
        assert_eq!(values(expr, "Encounter", &e).len(), 1);
        assert!(SearchPath::compile(expr, "Observation").is_none());
    }

    #[test]
    fn relative_component_paths() {
        let comp = json!({"code": {"text": "x"}, "valueQuantity": {"value": 5}});
        let p = SearchPath::compile_relative("value.as(Quantity)").expect("compiles");
        assert_eq!(p.evaluate(&comp).len(), 1);
        assert_eq!(p.evaluate(&comp)[0].choice_type, Some("Quantity"));
    }

    #[test]
    fn almost_every_supported_expression_compiles() {
        let mut failed = Vec::new();
        for t in searchable_types() {
            for p in search_parameters(t) {
                if let Some(expr) = &p.expression {
                    if SearchPath::compile(expr, t).is_none() {
                        failed.push(format!("{t}.{}: {expr}", p.code));
                    }
                }
                for c in &p.components {
                    if SearchPath::compile_relative(&c.expression).is_none() {
                        failed.push(format!("{t}.{} component: {}", p.code, c.expression));
                    }
                }
            }
        }
        // Patient.deceased is boolean logic over the choice, not a path: the search index
        // handles it by hand. Keep this list explicit.
        assert_eq!(
            failed,
            ["Patient.deceased: Patient.deceased.exists() and Patient.deceased != false"]
        );
    }
}
