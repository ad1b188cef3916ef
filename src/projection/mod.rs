//! The projections this server keeps, and the runner that feeds them from the log.

pub mod runner;

use std::path::{Path, PathBuf};

use crate::config::Config;

use sphere_projections::audit_view::AuditViewProjection;
use sphere_projections::search_index::SearchIndexProjection;
use sphere_projections::stats::StatsProjection;
use sphere_projections::{Projection, ProjectionError};

pub use runner::{ProjectionHandle, RunnerState, WaitError};

/// Every projection by the name operators use with `sphere rebuild`.
pub const NAMES: &[&str] = &[
    StatsProjection::NAME,
    SearchIndexProjection::NAME,
    AuditViewProjection::NAME,
];

/// Where projections keep their files inside the data directory.
pub fn projections_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("projections")
}

/// Where the search index keeps its tantivy files.
pub fn search_dir(data_dir: &Path) -> PathBuf {
    projections_dir(data_dir).join(SearchIndexProjection::NAME)
}

/// Opens the projection called `name` from its files in the data directory.
pub fn open(name: &str, config: &Config) -> Result<Box<dyn Projection>, ProjectionError> {
    let dir = projections_dir(&config.data_dir);
    match name {
        StatsProjection::NAME => Ok(Box::new(StatsProjection::open(&dir)?)),
        AuditViewProjection::NAME => Ok(Box::new(AuditViewProjection::open(&dir)?)),
        SearchIndexProjection::NAME => Ok(Box::new(SearchIndexProjection::open(
            &search_dir(&config.data_dir),
            &config.fhir_base_url(),
        )?)),
        other => Err(ProjectionError::Storage(format!(
            "no projection named {other:?}; known: {}",
            NAMES.join(", ")
        ))),
    }
}
