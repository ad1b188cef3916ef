//! The KurrentDB event log passes the event-log conformance suite, through the official
//! `kurrentdb` client.
//!
//! - By default the server is the **protocol test double** (`sphere::eventlog::kurrentdb::
//!   testserver`, backed by the embedded SQLite log): it proves the adapter's wire usage,
//!   not KurrentDB itself.
//! - With `SPHERE_TEST_EVENTSTORE_URL=kurrentdb://localhost:2113?tls=false` (start one with
//!   `docker compose --profile dev up -d kurrentdb-dev`) every case runs against that real
//!   server instead. The suite uses fresh stream names, so a server with other data is fine.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sphere::eventlog::conformance::Harness;
use sphere::eventlog::kurrentdb::testserver::ProtocolTestDouble;
use sphere::eventlog::kurrentdb::KurrentDbLog;
use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::EventLog;

/// One case's store: a real server, or a test double over a SQLite log in a temp dir.
struct KurrentHarness {
    dir: tempfile::TempDir,
    running: Mutex<Option<(ProtocolTestDouble, Arc<dyn EventLog>)>>,
}

impl KurrentHarness {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            running: Mutex::new(None),
        }
    }

    async fn start(&self) -> Arc<dyn EventLog> {
        if let Ok(url) = std::env::var("SPHERE_TEST_EVENTSTORE_URL") {
            return Arc::new(
                KurrentDbLog::connect(&url)
                    .await
                    .expect("connect to KurrentDB"),
            );
        }
        let backing: Arc<dyn EventLog> =
            Arc::new(SqliteLog::open(self.dir.path()).expect("open backing log"));
        let double = ProtocolTestDouble::start(backing.clone())
            .await
            .expect("start test double");
        let log = KurrentDbLog::connect(&double.url())
            .await
            .expect("connect to the test double");
        *self.running.lock().expect("harness lock") = Some((double, backing));
        Arc::new(log)
    }
}

#[async_trait]
impl Harness for KurrentHarness {
    async fn open(&self) -> Arc<dyn EventLog> {
        self.start().await
    }

    async fn reopen(&self, log: Arc<dyn EventLog>) -> Arc<dyn EventLog> {
        log.close().await.expect("close adapter");
        drop(log);
        let running = self.running.lock().expect("harness lock").take();
        if let Some((double, backing)) = running {
            double.stop().await;
            backing.close().await.expect("close backing log");
        }
        self.start().await
    }
}

sphere::conformance_tests!(KurrentHarness::new());
