//! The projections this server keeps, and the runner that feeds them from the log.

pub mod runner;

use std::path::{Path, PathBuf};

use sphere_projections::stats::StatsProjection;
use sphere_projections::{Projection, ProjectionError};

pub use runner::{ProjectionHandle, RunnerState, WaitError};

/// Every projection by the name operators use with `sphere rebuild`.
pub const NAMES: &[&str] = &[StatsProjection::NAME];

/// Where projections keep their files inside the data directory.
pub fn projections_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("projections")
}

/// Opens the projection called `name` from its files in the data directory.
pub fn open(name: &str, data_dir: &Path) -> Result<Box<dyn Projection>, ProjectionError> {
    let dir = projections_dir(data_dir);
    match name {
        StatsProjection::NAME => Ok(Box::new(StatsProjection::open(&dir)?)),
        other => Err(ProjectionError::Storage(format!(
            "no projection named {other:?}; known: {}",
            NAMES.join(", ")
        ))),
    }
}
