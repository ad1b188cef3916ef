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

// Adapter behaviour beyond the trait's contract, shown against the test double.

mod adapter {
    use std::sync::Arc;
    use std::time::Duration;

    use sphere::eventlog::kurrentdb::testserver::{DoubleOptions, ProtocolTestDouble};
    use sphere::eventlog::kurrentdb::KurrentDbLog;
    use sphere::eventlog::sqlite::SqliteLog;
    use sphere::eventlog::{
        EventFilter, EventLog, EventLogError, ExpectedRevision, NewEvent, StreamWrite,
        SubscriptionMessage,
    };

    fn one(kind: &str) -> Vec<NewEvent> {
        vec![NewEvent::new(kind, r#"{"x":1}"#)]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multi_stream_commit_on_a_server_without_the_v2_api_fails_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let backing: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).unwrap());
        let double = ProtocolTestDouble::start_with(
            backing,
            DoubleOptions {
                multi_stream_append: false,
                ..DoubleOptions::default()
            },
        )
        .await
        .unwrap();
        let log = KurrentDbLog::connect(&double.url()).await.unwrap();
        let err = log
            .append_multi(vec![
                StreamWrite {
                    stream: "txold-a".into(),
                    expected: ExpectedRevision::NoStream,
                    events: one("T"),
                },
                StreamWrite {
                    stream: "txold-b".into(),
                    expected: ExpectedRevision::NoStream,
                    events: one("T"),
                },
            ])
            .await
            .unwrap_err();
        match &err {
            EventLogError::Unavailable(message) => assert!(message.contains("25.1"), "{message}"),
            other => panic!("expected Unavailable, got {other}"),
        }
        assert_eq!(log.stream_revision("txold-a").await.unwrap(), None);
        assert_eq!(log.stream_revision("txold-b").await.unwrap(), None);
        // One stream needs no v2 API: it is atomic on every server.
        let single = log
            .append_multi(vec![StreamWrite {
                stream: "txold-a".into(),
                expected: ExpectedRevision::NoStream,
                events: one("T"),
            }])
            .await
            .unwrap();
        assert_eq!(single[0].next_revision, 0);
        double.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscription_survives_a_server_restart_without_gaps_or_doubles() {
        let dir = tempfile::tempdir().unwrap();
        let backing: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).unwrap());
        let double = ProtocolTestDouble::start(backing.clone()).await.unwrap();
        let address = double.address();
        let log = KurrentDbLog::connect(&double.url()).await.unwrap();
        for _ in 0..10 {
            log.append("restart-1", ExpectedRevision::Any, one("E"))
                .await
                .unwrap();
        }
        let mut subscription = log
            .subscribe(None, EventFilter::categories(["restart"]))
            .await
            .unwrap();
        let mut revisions = Vec::new();
        async fn next(s: &mut sphere::eventlog::Subscription) -> SubscriptionMessage {
            tokio::time::timeout(Duration::from_secs(20), s.next())
                .await
                .expect("subscription stalled")
                .expect("subscription ended")
                .expect("subscription failed")
        }
        while revisions.len() < 10 {
            if let SubscriptionMessage::Event(e) = next(&mut subscription).await {
                revisions.push(e.revision);
            }
        }
        // The server goes away; meanwhile more events are committed.
        double.stop().await;
        for _ in 0..5 {
            backing
                .append("restart-1", ExpectedRevision::Any, one("E"))
                .await
                .unwrap();
        }
        let double = ProtocolTestDouble::start_with(
            backing.clone(),
            DoubleOptions {
                address: Some(address),
                ..DoubleOptions::default()
            },
        )
        .await
        .unwrap();
        while revisions.len() < 15 {
            if let SubscriptionMessage::Event(e) = next(&mut subscription).await {
                revisions.push(e.revision);
            }
        }
        assert_eq!(revisions, (0..15).collect::<Vec<u64>>());
        double.stop().await;
    }
}

mod cluster {
    use std::sync::Arc;

    use sphere::eventlog::kurrentdb::testserver::{DoubleOptions, ProtocolTestDouble};
    use sphere::eventlog::kurrentdb::KurrentDbLog;
    use sphere::eventlog::sqlite::SqliteLog;
    use sphere::eventlog::{EventLog, ExpectedRevision, NewEvent, StreamWrite};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn multi_stream_commit_sent_to_a_follower_reaches_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        let backing: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).unwrap());
        let leader = ProtocolTestDouble::start(backing.clone()).await.unwrap();
        let follower = ProtocolTestDouble::start_with(
            backing.clone(),
            DoubleOptions {
                follower_of: Some(leader.address()),
                ..DoubleOptions::default()
            },
        )
        .await
        .unwrap();
        let log = KurrentDbLog::connect(&follower.url()).await.unwrap();
        let write = |stream: &str| StreamWrite {
            stream: stream.into(),
            expected: ExpectedRevision::NoStream,
            events: vec![NewEvent::new("T", "{}")],
        };
        let results = log
            .append_multi(vec![write("lead-a"), write("lead-b")])
            .await
            .unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(backing.stream_revision("lead-a").await.unwrap(), Some(0));
        assert_eq!(backing.stream_revision("lead-b").await.unwrap(), Some(0));
        // Later commits go straight to the leader.
        log.append_multi(vec![write("lead-c"), write("lead-d")])
            .await
            .unwrap();
        follower.stop().await;
        leader.stop().await;
    }
}
