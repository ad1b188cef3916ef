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

/// Counts its commits and what they made visible; commits at most once a minute unless asked.
struct Lazy {
    checkpoint: Option<Position>,
    applied: u64,
    seen: Arc<std::sync::Mutex<(u64, u64)>>,
}

impl Projection for Lazy {
    fn name(&self) -> &'static str {
        "lazy"
    }
    fn checkpoint(&self) -> Option<Position> {
        self.checkpoint
    }
    fn apply(&mut self, _: &RecordedEvent) -> Result<(), ProjectionError> {
        self.applied += 1;
        Ok(())
    }
    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        self.checkpoint = Some(position);
        let mut seen = self.seen.lock().unwrap();
        *seen = (seen.0 + 1, self.applied);
        Ok(())
    }
    fn reset(&mut self) -> Result<(), ProjectionError> {
        Ok(())
    }
    fn commit_interval(&self) -> Duration {
        Duration::from_secs(60)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_with_a_commit_interval_commits_seldom_but_at_once_for_a_waiting_request() {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).unwrap());
    let seen = Arc::new(std::sync::Mutex::new((0, 0)));
    let handle = runner::spawn(
        log.clone(),
        Lazy {
            checkpoint: None,
            applied: 0,
            seen: seen.clone(),
        },
    );
    let first = log
        .append(
            "Thing-0",
            ExpectedRevision::Any,
            vec![NewEvent::new("Thing", "{}")],
        )
        .await
        .unwrap();
    // A request waiting for the first event gets it committed at once.
    handle
        .wait_for(first.position, Duration::from_secs(5))
        .await
        .unwrap();
    let mut last = first.position;
    for i in 1..200 {
        last = log
            .append(
                &format!("Thing-{i}"),
                ExpectedRevision::Any,
                vec![NewEvent::new("Thing", "{}")],
            )
            .await
            .unwrap()
            .position;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (commits, _) = *seen.lock().unwrap();
    assert_eq!(commits, 1, "the later events wait for the interval");
    assert!(
        handle.applied().is_some_and(|p| p < last),
        "the published position stops before the first uncommitted event"
    );
    // A request waiting for the last event gets a commit now, not in a minute.
    handle.wait_for(last, Duration::from_secs(5)).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), (2, 200));
    assert_eq!(handle.applied(), Some(last));
}
