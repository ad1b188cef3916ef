//! The embedded SQLite log passes the event-log conformance suite.

use std::sync::Arc;

use async_trait::async_trait;
use sphere::eventlog::conformance::Harness;
use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::EventLog;

/// Each case gets its own data directory, removed when the harness is dropped.
struct SqliteHarness {
    dir: tempfile::TempDir,
}

impl SqliteHarness {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    async fn open(&self) -> Arc<dyn EventLog> {
        Arc::new(SqliteLog::open(self.dir.path()).expect("open log"))
    }

    async fn reopen(&self, log: Arc<dyn EventLog>) -> Arc<dyn EventLog> {
        log.close().await.expect("close");
        drop(log);
        Arc::new(SqliteLog::open(self.dir.path()).expect("reopen log"))
    }
}

sphere::conformance_tests!(SqliteHarness::new());

/// Graceful shutdown: appends already accepted when `close` is called are committed and
/// acknowledged; later ones are refused with `Closed`, never lost silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_finishes_appends_in_flight_and_refuses_later_ones() {
    use sphere::eventlog::{EventLogError, ExpectedRevision, NewEvent};
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open(dir.path()).unwrap();
    let writers: Vec<_> = (0..64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut acknowledged = 0u64;
                for n in 0..50 {
                    match log
                        .append(
                            &format!("Shutdown-{i}"),
                            ExpectedRevision::Any,
                            vec![NewEvent::new("E", format!(r#"{{"n":{n}}}"#))],
                        )
                        .await
                    {
                        Ok(_) => acknowledged += 1,
                        Err(EventLogError::Closed) => break,
                        Err(other) => panic!("unexpected error: {other}"),
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    log.close().await.unwrap();
    let mut acknowledged = 0;
    for w in writers {
        acknowledged += w.await.unwrap();
    }
    let reopened = SqliteLog::open(dir.path()).unwrap();
    let mut stored = 0;
    for i in 0..64 {
        stored += reopened
            .stream_revision(&format!("Shutdown-{i}"))
            .await
            .unwrap()
            .map(|r| r + 1)
            .unwrap_or(0);
    }
    assert_eq!(
        stored, acknowledged,
        "every acknowledged append is stored, and nothing else"
    );
    assert!(acknowledged > 0);
}
