//! FHIR R4 / US Core 6.1.0 rules: definition tables, validation, search-parameter metadata.
