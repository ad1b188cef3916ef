//! Log statistics: events and streams per category and event type, and the newest commit.
//!
//! Small, but a real projection: operators read it from `/health/ready` and `sphere log
//! stats`, and it exercises the runner end to end (checkpoint, restart, rebuild). Stored as one
//! JSON file written atomically (temp file + rename) with its checkpoint inside.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sphere_domain::envelope::{Position, RecordedEvent};

use crate::{Projection, ProjectionError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogStatistics {
    pub checkpoint: Option<Position>,
    pub events: u64,
    /// Streams seen, per category (a stream is counted at its revision 0).
    pub streams_by_category: BTreeMap<String, u64>,
    pub events_by_category: BTreeMap<String, u64>,
    pub events_by_type: BTreeMap<String, u64>,
    pub last_commit_ms: Option<i64>,
}

/// The statistics projection; [`StatsProjection::view`] hands out a shared read handle.
pub struct StatsProjection {
    path: PathBuf,
    working: LogStatistics,
    published: Arc<RwLock<LogStatistics>>,
}

impl StatsProjection {
    pub const NAME: &'static str = "stats";

    /// Loads the stored statistics from `dir` (empty when there are none).
    pub fn open(dir: &Path) -> Result<Self, ProjectionError> {
        std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
        let path = dir.join("stats.json");
        let working = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                ProjectionError::Storage(format!(
                    "{} is unreadable ({e}); delete it to rebuild",
                    path.display()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LogStatistics::default(),
            Err(e) => return Err(storage(&path, e)),
        };
        Ok(Self {
            path,
            published: Arc::new(RwLock::new(working.clone())),
            working,
        })
    }

    /// A read handle that sees each commit.
    pub fn view(&self) -> Arc<RwLock<LogStatistics>> {
        self.published.clone()
    }

    fn publish(&self) {
        if let Ok(mut published) = self.published.write() {
            *published = self.working.clone();
        }
    }
}

fn storage(path: &Path, e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Storage(format!("{}: {e}", path.display()))
}

impl Projection for StatsProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn checkpoint(&self) -> Option<Position> {
        self.working.checkpoint
    }

    /// Operators read counts, not positions: a file rewrite per commit of the log (hundreds a
    /// second with the access history on) is not worth it.
    fn commit_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let s = &mut self.working;
        s.events += 1;
        *s.events_by_category
            .entry(event.category().to_owned())
            .or_default() += 1;
        *s.events_by_type
            .entry(event.event_type.clone())
            .or_default() += 1;
        if event.revision == 0 {
            *s.streams_by_category
                .entry(event.category().to_owned())
                .or_default() += 1;
        }
        s.last_commit_ms = Some(event.commit_ms());
        Ok(())
    }

    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        self.working.checkpoint = Some(position);
        let bytes = serde_json::to_vec(&self.working).map_err(|e| storage(&self.path, e))?;
        let temp = self.path.with_extension("json.tmp");
        std::fs::write(&temp, bytes).map_err(|e| storage(&temp, e))?;
        std::fs::rename(&temp, &self.path).map_err(|e| storage(&self.path, e))?;
        self.publish();
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ProjectionError> {
        self.working = LogStatistics::default();
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(storage(&self.path, e)),
        }
        self.publish();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphere_domain::envelope::EventMetadata;

    fn event(position: u64, stream: &str, revision: u64, kind: &str) -> RecordedEvent {
        RecordedEvent {
            position: Position(position),
            stream: stream.into(),
            revision,
            event_id: uuid::Uuid::new_v4(),
            event_type: kind.into(),
            data: bytes::Bytes::from_static(b"{}"),
            metadata: EventMetadata {
                commit_ms: 1000 + position as i64,
                ..EventMetadata::default()
            },
        }
    }

    #[test]
    fn counts_survive_a_restart_with_their_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = StatsProjection::open(dir.path()).unwrap();
        p.apply(&event(1, "Patient-1", 0, "ResourceCreated"))
            .unwrap();
        p.apply(&event(2, "Patient-1", 1, "ResourceUpdated"))
            .unwrap();
        p.apply(&event(3, "Observation-9", 0, "ResourceCreated"))
            .unwrap();
        p.commit(Position(5)).unwrap();
        let reopened = StatsProjection::open(dir.path()).unwrap();
        let s = reopened.view().read().unwrap().clone();
        assert_eq!(s.checkpoint, Some(Position(5)));
        assert_eq!(s.events, 3);
        assert_eq!(s.streams_by_category["Patient"], 1);
        assert_eq!(s.events_by_category["Patient"], 2);
        assert_eq!(s.events_by_type["ResourceCreated"], 2);
        assert_eq!(s.last_commit_ms, Some(1003));
    }

    #[test]
    fn uncommitted_events_are_not_visible_and_reset_clears() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = StatsProjection::open(dir.path()).unwrap();
        let view = p.view();
        p.apply(&event(1, "Patient-1", 0, "ResourceCreated"))
            .unwrap();
        assert_eq!(view.read().unwrap().events, 0);
        p.commit(Position(1)).unwrap();
        assert_eq!(view.read().unwrap().events, 1);
        p.reset().unwrap();
        assert_eq!(p.checkpoint(), None);
        assert!(StatsProjection::open(dir.path())
            .unwrap()
            .checkpoint()
            .is_none());
    }
}
