//! Embedded event log figures (issue 2): durable append throughput with 1, 16 and 128
//! concurrent writers (1 KiB events), catch-up read of `$all`, and live subscription lag.
//!
//! `cargo bench --bench eventlog` (SPHERE_BENCH_DIR puts the store on another disk; default:
//! a temp dir under the target directory, on a real disk, so every fsync is real;
//! SPHERE_BENCH_SECONDS sets each append run's length, default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventFilter, EventLog, ExpectedRevision, NewEvent, SubscriptionMessage};

fn payload() -> String {
    // A 1 KiB JSON body.
    let pad = "x".repeat(1024 - 10);
    format!(r#"{{"pad":"{pad}"}}"#)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var("SPHERE_BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).expect("bench dir"),
        Err(_) => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench dir"),
    }
}

async fn append_throughput(writers: usize, duration: Duration) -> f64 {
    let dir = bench_dir();
    let log = SqliteLog::open(dir.path()).expect("open");
    let body = payload();
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < duration {
                    log.append(
                        &format!("Bench-{w}"),
                        ExpectedRevision::Any,
                        vec![NewEvent::new("Appended", body.clone())],
                    )
                    .await
                    .expect("append");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    log.close().await.expect("close");
    rate
}

async fn catch_up_read(events: usize) -> f64 {
    let dir = bench_dir();
    let log = SqliteLog::open(dir.path()).expect("open");
    let body = payload();
    // Fill quickly with large multi-event appends.
    for chunk in 0..events / 1000 {
        let batch = (0..1000)
            .map(|_| NewEvent::new("Appended", body.clone()))
            .collect();
        log.append(&format!("Fill-{chunk}"), ExpectedRevision::Any, batch)
            .await
            .expect("fill");
    }
    let started = Instant::now();
    let mut subscription = log
        .subscribe(None, EventFilter::all())
        .await
        .expect("subscribe");
    let mut seen = 0usize;
    while let Some(message) = subscription.next().await {
        match message.expect("message") {
            SubscriptionMessage::Event(_) => seen += 1,
            SubscriptionMessage::Checkpoint(_) => {}
            SubscriptionMessage::CaughtUp => break,
        }
    }
    assert_eq!(seen, events);
    let rate = seen as f64 / started.elapsed().as_secs_f64();
    log.close().await.expect("close");
    rate
}

/// Commit-to-delivery lag of a live subscription, one append at a time. The commit happens
/// somewhere between the append call and its acknowledgement, so two figures bound the lag:
/// from the acknowledgement (lower bound; can be 0 when delivery beats the ack back) and from
/// the call (upper bound; includes the fsync).
async fn subscription_lag(samples: usize) -> ((f64, f64), (f64, f64)) {
    let dir = bench_dir();
    let log = SqliteLog::open(dir.path()).expect("open");
    let shared: Arc<dyn EventLog> = Arc::new(log.clone());
    let mut subscription = shared
        .subscribe(None, EventFilter::all())
        .await
        .expect("subscribe");
    let mut after_ack = Vec::with_capacity(samples);
    let mut after_call = Vec::with_capacity(samples);
    for i in 0..samples {
        let body = format!(r#"{{"i":{i}}}"#);
        let called = Instant::now();
        log.append(
            "Lag-1",
            ExpectedRevision::Any,
            vec![NewEvent::new("Tick", body)],
        )
        .await
        .expect("append");
        // The append returns once the commit is durable; from there to delivery is the lag.
        let committed = Instant::now();
        loop {
            match subscription.next().await.expect("open").expect("ok") {
                SubscriptionMessage::Event(_) => break,
                SubscriptionMessage::CaughtUp | SubscriptionMessage::Checkpoint(_) => continue,
            }
        }
        after_ack.push(committed.elapsed().as_secs_f64() * 1000.0);
        after_call.push(called.elapsed().as_secs_f64() * 1000.0);
    }
    log.close().await.expect("close");
    (median_p99(after_ack), median_p99(after_call))
}

fn median_p99(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let seconds = std::env::var("SPHERE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5u64);
    runtime.block_on(async {
        let mut single = 0.0;
        for writers in [1, 16, 128] {
            let rate = append_throughput(writers, Duration::from_secs(seconds)).await;
            if writers == 1 {
                single = rate;
            }
            println!(
                "append, {writers:>3} writers, 1 KiB events, durable: {rate:>10.0} events/s ({:.1}x single writer)",
                rate / single
            );
        }
        let rate = catch_up_read(500_000).await;
        println!("catch-up read of $all (500,000 x 1 KiB):     {rate:>10.0} events/s");
        let ((ack_median, ack_p99), (call_median, call_p99)) = subscription_lag(2_000).await;
        println!(
            "live subscription lag, ack to delivery:      median {ack_median:.3} ms, p99 {ack_p99:.3} ms"
        );
        println!(
            "live subscription lag, append call to delivery (incl. fsync): median {call_median:.3} ms, p99 {call_p99:.3} ms"
        );
    });
}
