//! Validation of a FHIR R4 JSON resource against the base definitions and the US Core 6.1.0
//! profiles it claims in `meta.profile`.
//!
//! The checks are driven entirely by the generated tables ([`super::definitions()`],
//! [`super::profiles`]); this module holds only the rules of the FHIR JSON format and of
//! profile constraint evaluation. It never panics, whatever the input (see the proptest below).
//!
//! Invariants: ele-1, ext-1 and dom-2..5 are checked structurally; the other FHIRPath invariants
//! are evaluated by [`super::fhirpath`] (US Core's always, the base types' with
//! [`ValidationOptions::base_invariants`]); one that needs `resolve()`, `memberOf()` or another
//! function the evaluator lacks is skipped, and an empty result counts as satisfied.
//!
//! Not checked: bindings whose value set is not enumerable in the tables (large, filter-based or
//! VSAC-hosted), slices discriminated by type or profile, slice-specific invariants (the NPI
//! check digit), and whether references resolve (that needs the store).

mod binding;
mod location;
mod primitive;
mod profile;
mod structure;

#[cfg(test)]
mod tests;

use serde_json::{json, Value};

/// How bad an issue is (OperationOutcome.issue.severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The FHIR issue-type code (OperationOutcome.issue.code) of an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueCode {
    /// Not a JSON object, or not a FHIR resource at all.
    Invalid,
    /// Unknown element, wrong JSON shape (array vs single), wrong data type.
    Structure,
    /// A mandatory element is missing.
    Required,
    /// A primitive has the wrong format, or a value differs from a fixed/pattern value.
    Value,
    /// A FHIR invariant (ele-1, ext-1, dom-2...) is violated.
    Invariant,
    /// A code is not in a required value set.
    CodeInvalid,
    /// Unknown resource type or profile.
    NotSupported,
    /// Nesting beyond what the validator walks.
    TooCostly,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Invariant => "invariant",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::NotSupported => "not-supported",
            IssueCode::TooCostly => "too-costly",
        }
    }
}

/// One validation finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    /// FHIRPath-like location using JSON names: `Patient.name[0].given[1]`, `Observation.valueQuantity`.
    pub expression: String,
    pub message: String,
}

impl Issue {
    pub(crate) fn error(
        code: IssueCode,
        expression: impl Into<String>,
        message: impl Into<String>,
    ) -> Issue {
        Issue {
            severity: Severity::Error,
            code,
            expression: expression.into(),
            message: message.into(),
        }
    }

    pub(crate) fn warning(
        code: IssueCode,
        expression: impl Into<String>,
        message: impl Into<String>,
    ) -> Issue {
        Issue {
            severity: Severity::Warning,
            code,
            expression: expression.into(),
            message: message.into(),
        }
    }

    /// True for errors and fatal issues: the resource must not be written.
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }

    /// This issue as an `OperationOutcome.issue` element.
    pub fn to_fhir(&self) -> Value {
        json!({
            "severity": self.severity.as_str(),
            "code": self.code.as_str(),
            "diagnostics": self.message,
            "expression": [self.expression],
        })
    }
}

/// What to check beyond the structural rules and the claimed profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValidationOptions {
    /// Evaluate the base types' FHIRPath invariants (`per-1`, `obs-6`, `que-1`...). Off by
    /// default until the synthetic data set satisfies them (its young patients get an old
    /// address whose period ends before it starts, which `per-1` rejects). The invariants US Core
    /// profiles add (`us-core-2`...) are always evaluated.
    pub base_invariants: bool,
}

/// Validates a resource (base FHIR R4 rules plus the US Core profiles in `meta.profile`).
/// An empty result, or one without errors (see [`has_errors`]), means the resource may be written.
pub fn validate(resource: &Value) -> Vec<Issue> {
    validate_with(resource, ValidationOptions::default())
}

/// [`validate`] with explicit options.
pub fn validate_with(resource: &Value, options: ValidationOptions) -> Vec<Issue> {
    let mut issues = Vec::new();
    let Some(resource_type) = structure::check_resource(resource, options, &mut issues) else {
        return issues;
    };
    profile::check_extensions(resource, resource_type, &mut issues);
    profile::check_claimed_profiles(resource, resource_type, &mut issues);
    issues
}

/// Validates against one profile (by canonical URL) in addition to the base rules, whatever
/// `meta.profile` says: for `$validate?profile=...`.
pub fn validate_against(resource: &Value, profile_url: &str) -> Vec<Issue> {
    let mut issues = Vec::new();
    let options = ValidationOptions::default();
    let Some(resource_type) = structure::check_resource(resource, options, &mut issues) else {
        return issues;
    };
    profile::check_extensions(resource, resource_type, &mut issues);
    profile::check_profile(resource, resource_type, profile_url, &mut issues);
    issues
}

/// True if any issue is an error or fatal.
pub fn has_errors(issues: &[Issue]) -> bool {
    issues.iter().any(Issue::is_error)
}

/// An OperationOutcome resource carrying these issues (an `information` "All OK" when empty).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let list: Vec<Value> = if issues.is_empty() {
        vec![json!({"severity": "information", "code": "informational", "diagnostics": "All OK"})]
    } else {
        issues.iter().map(Issue::to_fhir).collect()
    };
    json!({"resourceType": "OperationOutcome", "issue": list})
}
