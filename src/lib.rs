//! Sphere EHR: the standardized patient and population API of an EHR on an event log.
//!
//! This crate is the application: configuration, the event-log adapters, the projection
//! runner, the HTTP surface and the CLI. Pure rules live in `sphere-domain`; read models in
//! `sphere-projections`.

pub mod app;
pub mod audit;
pub mod bulk;
pub mod cli;
pub mod config;
pub mod demo;
pub mod eventlog;
pub mod fhir;
pub mod generate;
pub mod http;
pub mod import;
pub mod ops;
pub mod private_file;
pub mod projection;
pub mod smart;
