//! Sphere EHR domain: event envelopes, commands, aggregates, FHIR rules and SMART scopes.
//!
//! Pure logic: no IO, no async runtime, no HTTP. Everything here can be tested with plain
//! values.

pub mod audit;
pub mod envelope;
pub mod fhir;
pub mod fhir_rest;
pub mod json_patch;
pub mod resource;
pub mod smart;
pub mod synthetic;
