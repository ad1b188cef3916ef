//! The projection runner: read-your-writes waits, failures surface instead of skipping.

use std::sync::Arc;
use std::time::Duration;

use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventLog, ExpectedRevision, NewEvent, Position, RecordedEvent};
use sphere::projection::{runner, RunnerState, WaitError};
use sphere_projections::stats::StatsProjection;
use sphere_projections::{Projection, ProjectionError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_visible_once_wait_for_its_position_returns() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).unwrap());
    let stats = StatsProjection::open(&dir.path().join("projections")).unwrap();
    let view = stats.view();
    let handle = runner::spawn(log.clone(), stats);
    for i in 0..50u64 {
        let written = log
            .append(
                &format!("Patient-{i}"),
                ExpectedRevision::NoStream,
                vec![NewEvent::new("ResourceCreated", "{}")],
            )
            .await
            .unwrap();
        handle
            .wait_for(written.position, Duration::from_secs(5))
            .await
            .unwrap();
        // Read-your-writes: the projection already holds this very event.
        assert_eq!(view.read().unwrap().events, i + 1);
    }
    assert_eq!(handle.state(), RunnerState::Live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_position_not_yet_written_times_out_with_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).unwrap());
    let stats = StatsProjection::open(&dir.path().join("projections")).unwrap();
    let handle = runner::spawn(log.clone(), stats);
    let err = handle
        .wait_for(Position(1_000), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(err, WaitError::Timeout { .. }), "{err}");
}

/// A projection that cannot apply one kind of event.
struct Picky {
    checkpoint: Option<Position>,
}

impl Projection for Picky {
    fn name(&self) -> &'static str {
        "picky"
    }
    fn checkpoint(&self) -> Option<Position> {
        self.checkpoint
    }
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.event_type == "Poison" {
            return Err(ProjectionError::BadEvent {
                position: event.position,
                message: "cannot apply".into(),
            });
        }
        Ok(())
    }
    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        self.checkpoint = Some(position);
        Ok(())
    }
    fn reset(&mut self) -> Result<(), ProjectionError> {
        self.checkpoint = None;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_that_fails_stops_and_says_why_instead_of_skipping() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).unwrap());
    let handle = runner::spawn(log.clone(), Picky { checkpoint: None });
    let poison = log
        .append(
            "Thing-1",
            ExpectedRevision::Any,
            vec![NewEvent::new("Poison", "{}")],
        )
        .await
        .unwrap();
    let err = handle
        .wait_for(poison.position, Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, WaitError::Stopped { .. }), "{err}");
    assert!(
        matches!(handle.state(), RunnerState::Failed(reason) if reason.contains("cannot apply"))
    );
}
