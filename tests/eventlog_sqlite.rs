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
