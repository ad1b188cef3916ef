//! Deterministic synthetic USCDI v3 patients (US Core 6.1.0) for demos, tests and benchmarks.
