//! Append and catch-up throughput through the KurrentDB adapter (official client, gRPC),
//! beside the same operations on the embedded SQLite log that backs the server.
//!
//! By default the server is the **protocol test double** over a SQLite log in a temp dir, so
//! the figures measure the adapter + client + gRPC + the double, not KurrentDB. Set
//! `SPHERE_BENCH_EVENTSTORE_URL=kurrentdb://localhost:2113?tls=false` to measure a real
//! server instead (the SQLite columns then still measure the embedded log).
//!
//! `cargo bench --bench kurrentdb_adapter` (a plain binary: `harness = false`). Sizes can be
//! scaled with `SPHERE_BENCH_SCALE` (default 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sphere::eventlog::kurrentdb::testserver::ProtocolTestDouble;
use sphere::eventlog::kurrentdb::KurrentDbLog;
use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventFilter, EventLog, ExpectedRevision, NewEvent, SubscriptionMessage};

/// A 1 KiB JSON event body.
fn body(n: usize) -> String {
    let pad = "x".repeat(1024 - 32);
    format!(r#"{{"n":{n:>10},"pad":"{pad}"}}"#)
}

fn scale() -> usize {
    std::env::var("SPHERE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Events per second of `writers` concurrent tasks, each appending `per_writer` single
/// events to its own stream.
async fn append_rate(log: Arc<dyn EventLog>, writers: usize, per_writer: usize) -> f64 {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            let stream = format!("bench{run}-w{w}");
            tokio::spawn(async move {
                for i in 0..per_writer {
                    log.append(
                        &stream,
                        ExpectedRevision::Any,
                        vec![NewEvent::new("BenchAppended", body(i))],
                    )
                    .await
                    .expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer");
    }
    (writers * per_writer) as f64 / started.elapsed().as_secs_f64()
}

/// Events per second of appends of `batch` events each.
async fn batch_append_rate(log: &dyn EventLog, batches: usize, batch: usize) -> f64 {
    let stream = format!("benchbatch{}-1", uuid::Uuid::new_v4().simple());
    let started = Instant::now();
    for b in 0..batches {
        let events = (0..batch)
            .map(|i| NewEvent::new("BenchAppended", body(b * batch + i)))
            .collect();
        log.append(&stream, ExpectedRevision::Any, events)
            .await
            .expect("batch append");
    }
    (batches * batch) as f64 / started.elapsed().as_secs_f64()
}

/// Writes `count` events in a fresh category (batches of 500) and returns it.
async fn fill(log: &dyn EventLog, count: usize) -> String {
    let category = format!("benchread{}", uuid::Uuid::new_v4().simple());
    for chunk in 0..count.div_ceil(500) {
        let n = 500.min(count - chunk * 500);
        let events = (0..n)
            .map(|i| NewEvent::new("BenchAppended", body(chunk * 500 + i)))
            .collect();
        log.append(
            &format!("{category}-{chunk}"),
            ExpectedRevision::Any,
            events,
        )
        .await
        .expect("fill");
    }
    category
}

/// Events per second of a catch-up subscription delivering `count` historical events.
async fn catch_up_rate(log: &dyn EventLog, category: &str, count: usize) -> f64 {
    let started = Instant::now();
    let mut sub = log
        .subscribe(None, EventFilter::categories([category]))
        .await
        .expect("subscribe");
    let mut seen = 0;
    // Historical events, then the caught-up marker ends the measurement.
    loop {
        match tokio::time::timeout(Duration::from_secs(60), sub.next())
            .await
            .expect("subscription stalled")
            .expect("subscription ended")
            .expect("subscription failed")
        {
            SubscriptionMessage::Event(_) => seen += 1,
            SubscriptionMessage::Checkpoint(_) => {}
            SubscriptionMessage::CaughtUp => break,
        }
    }
    assert_eq!(seen, count, "catch-up delivered every event");
    count as f64 / started.elapsed().as_secs_f64()
}

/// Events per second of paging `$all` (filtered to `category`) 1000 at a time.
async fn read_all_rate(log: &dyn EventLog, category: &str, count: usize) -> f64 {
    let filter = EventFilter::categories([category]);
    let started = Instant::now();
    let mut cursor = None;
    let mut seen = 0;
    loop {
        let page = log.read_all(cursor, &filter, 1000).await.expect("read_all");
        seen += page.len();
        if page.len() < 1000 {
            break;
        }
        cursor = page.last().map(|e| e.position);
    }
    assert_eq!(seen, count);
    count as f64 / started.elapsed().as_secs_f64()
}

struct Row {
    what: String,
    adapter: f64,
    sqlite: f64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let k = scale();
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = Arc::new(SqliteLog::open(dir.path()).expect("sqlite log"));
    let backing: Arc<dyn EventLog> = sqlite.clone();
    let (adapter, _double, server): (Arc<dyn EventLog>, Option<ProtocolTestDouble>, String) =
        match std::env::var("SPHERE_BENCH_EVENTSTORE_URL") {
            Ok(url) => (
                Arc::new(KurrentDbLog::connect(&url).await.expect("connect")),
                None,
                format!("KurrentDB at {url}"),
            ),
            Err(_) => {
                let double_dir = tempfile::tempdir().expect("temp dir");
                let double_log: Arc<dyn EventLog> =
                    Arc::new(SqliteLog::open(double_dir.path()).expect("double's log"));
                let double = ProtocolTestDouble::start(double_log)
                    .await
                    .expect("test double");
                let adapter = KurrentDbLog::connect(&double.url()).await.expect("connect");
                // Keep the directory for the whole run.
                std::mem::forget(double_dir);
                (
                    Arc::new(adapter),
                    Some(double),
                    "the protocol test double (gRPC on loopback, SQLite behind it)".into(),
                )
            }
        };
    println!("KurrentDB adapter benchmark against {server}; 1 KiB events; scale {k}");

    let mut rows = Vec::new();
    for (writers, per_writer) in [(1, 100 * k), (16, 25 * k), (128, 4 * k)] {
        rows.push(Row {
            what: format!("append, {writers} concurrent writer(s), 1 event each"),
            adapter: append_rate(adapter.clone(), writers, per_writer).await,
            sqlite: append_rate(backing.clone(), writers, per_writer).await,
        });
    }
    rows.push(Row {
        what: "append, 1 writer, batches of 100 events".into(),
        adapter: batch_append_rate(&*adapter, 20 * k, 100).await,
        sqlite: batch_append_rate(&*backing, 20 * k, 100).await,
    });
    let count = 20_000 * k;
    let on_adapter = fill(&*adapter, count).await;
    let on_sqlite = fill(&*backing, count).await;
    rows.push(Row {
        what: format!("catch-up subscription over {count} events"),
        adapter: catch_up_rate(&*adapter, &on_adapter, count).await,
        sqlite: catch_up_rate(&*backing, &on_sqlite, count).await,
    });
    rows.push(Row {
        what: format!("read_all pages of 1000 over {count} events"),
        adapter: read_all_rate(&*adapter, &on_adapter, count).await,
        sqlite: read_all_rate(&*backing, &on_sqlite, count).await,
    });

    println!(
        "{:<52} {:>14} {:>14}",
        "operation", "adapter ev/s", "sqlite ev/s"
    );
    for row in rows {
        println!(
            "{:<52} {:>14.0} {:>14.0}",
            row.what, row.adapter, row.sqlite
        );
    }
}
