//! The operations surface: metrics and backup/restore of the embedded store.

pub mod backup;
pub mod metrics;
