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

/// Takes `n` events from `subscription` (skipping progress messages), at most 20 s.
async fn take_events(
    subscription: &mut sphere::eventlog::Subscription,
    n: usize,
) -> Vec<sphere::eventlog::RecordedEvent> {
    use sphere::eventlog::SubscriptionMessage;
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let message = tokio::time::timeout(std::time::Duration::from_secs(20), subscription.next())
            .await
            .expect("the subscription delivers in time")
            .expect("the subscription is open")
            .expect("no error");
        if let SubscriptionMessage::Event(e) = message {
            events.push(e);
        }
    }
    events
}

/// Live events come from the writer's memory; a commit by another writer on the same file
/// (another process, such as `sphere import` beside a running server) is not in that memory
/// and must still reach the subscription, in order, with what follows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_subscription_sees_another_writers_commits_in_order() {
    use sphere::eventlog::{EventFilter, ExpectedRevision, NewEvent};
    let dir = tempfile::tempdir().unwrap();
    let server = SqliteLog::open(dir.path()).unwrap();
    let other = SqliteLog::open(dir.path()).unwrap();
    let mut subscription = server.subscribe(None, EventFilter::all()).await.unwrap();
    let append = |log: &SqliteLog, stream: &str| {
        let log = log.clone();
        let stream = stream.to_owned();
        async move {
            log.append(
                &stream,
                ExpectedRevision::Any,
                vec![NewEvent::new("E", "{}")],
            )
            .await
            .unwrap()
            .position
        }
    };
    let mut written = vec![append(&server, "Mine-1").await];
    written.push(append(&other, "Theirs-1").await);
    written.push(append(&server, "Mine-2").await);
    written.push(append(&other, "Theirs-2").await);
    let events = take_events(&mut subscription, 4).await;
    let positions: Vec<_> = events.iter().map(|e| e.position).collect();
    assert_eq!(positions, written);
    let streams: Vec<_> = events.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, ["Mine-1", "Theirs-1", "Mine-2", "Theirs-2"]);
}

/// A subscriber that stops reading while the log commits more than the in-memory feed holds
/// gets the missed commits from the file: nothing lost, nothing twice, and each event as the
/// file has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_falls_behind_the_live_feed_misses_nothing() {
    use sphere::eventlog::{EventFilter, ExpectedRevision, NewEvent};
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open(dir.path()).unwrap();
    let mut subscription = log.subscribe(None, EventFilter::all()).await.unwrap();
    // Enough events to fill the subscription's buffer in a few commits...
    for chunk in 0..5 {
        let events = (0..1000)
            .map(|n| NewEvent::new("Bulk", format!(r#"{{"n":{}}}"#, chunk * 1000 + n)))
            .collect();
        log.append(&format!("Bulk-{chunk}"), ExpectedRevision::Any, events)
            .await
            .unwrap();
    }
    // ...then more single commits than the feed keeps while nobody reads.
    for n in 0..1100 {
        log.append(
            &format!("Single-{}", n % 7),
            ExpectedRevision::Any,
            vec![NewEvent::new("Single", format!(r#"{{"n":{n}}}"#))],
        )
        .await
        .unwrap();
    }
    let events = take_events(&mut subscription, 6100).await;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e.position.0,
            i as u64 + 1,
            "in order, without gaps or doubles"
        );
    }
    let stored = log
        .read_all(None, &EventFilter::all(), 10_000)
        .await
        .unwrap();
    assert_eq!(events, stored, "live events equal the stored ones");
}

/// A lagging subscriber makes the live feed keep up to its length of commits in memory: a
/// large commit must go out without its events (read from the file instead), and still reach
/// every subscription whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_commit_reaches_subscriptions_without_being_kept_in_the_feed() {
    use sphere::eventlog::{EventFilter, ExpectedRevision, NewEvent};
    let dir = tempfile::tempdir().unwrap();
    let log = SqliteLog::open(dir.path()).unwrap();
    let mut feed = log.feed();
    let mut subscription = log.subscribe(None, EventFilter::all()).await.unwrap();
    let small = log
        .append(
            "Small-1",
            ExpectedRevision::Any,
            vec![NewEvent::new("Small", "{}")],
        )
        .await
        .unwrap()
        .position;
    let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(64 * 1024));
    let events = (0..8).map(|_| NewEvent::new("Big", big.clone())).collect();
    let large = log
        .append("Big-1", ExpectedRevision::Any, events)
        .await
        .unwrap();
    let first = feed.recv().await.unwrap();
    assert_eq!(
        (first.after, first.upto, first.events.len()),
        (0, small.0, 1)
    );
    let second = feed.recv().await.unwrap();
    assert_eq!(second.upto, large.position.0);
    assert!(
        second.events.is_empty() && second.after == second.upto,
        "a large commit is announced, not held: {} events after {}",
        second.events.len(),
        second.after
    );
    let events = take_events(&mut subscription, 9).await;
    let stored = log.read_all(None, &EventFilter::all(), 100).await.unwrap();
    assert_eq!(events, stored);
}

/// Reads that never pause (a busy server) used to keep the WAL from ever starting over: it
/// grew with everything written since the start. The checkpointer now restarts it once it is
/// long and wholly copied, so its size stays bounded however much is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wal_stays_bounded_under_continuous_reads_and_writes() {
    use sphere::eventlog::{Direction, ExpectedRevision, NewEvent, StreamStart};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteLog::open(dir.path()).unwrap());
    log.append(
        "Read-1",
        ExpectedRevision::Any,
        vec![NewEvent::new("Read", "{}")],
    )
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (log, stop) = (log.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                log.read_stream("Read-1", Direction::Backwards, StreamStart::Origin, 1)
                    .await
                    .unwrap();
                reads += 1;
            }
            reads
        }));
    }
    let wal = dir.path().join("events.sqlite3-wal");
    let body = format!(r#"{{"text":"{}"}}"#, "x".repeat(16 * 1024));
    let mut written = 0usize;
    let mut largest = 0u64;
    // 160 MiB in commits of 128 KiB, with the readers running throughout.
    for i in 0..1280 {
        let events = (0..8).map(|_| NewEvent::new("Big", body.clone())).collect();
        log.append(&format!("Big-{i}"), ExpectedRevision::Any, events)
            .await
            .unwrap();
        written += 8 * body.len();
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    assert!(reads > 1000, "the readers ran throughout ({reads} reads)");
    assert!(largest > 0, "the WAL file was found at {}", wal.display());
    // Without the restart the WAL holds everything written and more (203 MiB here); with
    // it, it is rewound every few checkpoint rounds (30-90 MiB on a quiet machine; more when
    // the readers and the checkpointer are starved of CPU, as under the full suite).
    assert!(
        largest < written as u64,
        "the WAL reached {} MiB after {} MiB written",
        largest >> 20,
        written >> 20
    );
}
