//! Crash safety of the embedded log: a child process appends with many concurrent writers and
//! runs a projection, and is killed with SIGKILL at random moments. After each kill the store
//! is reopened and checked: every acknowledged append is there, no multi-event append is
//! partial, revisions and positions are unique and gap-free, and the projection's checkpoint
//! agrees with its data and resumes without skipping or doubling anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{EventFilter, EventLog, ExpectedRevision, NewEvent, Position};
use sphere::projection::runner;
use sphere_projections::stats::StatsProjection;

const CHILD_ENV: &str = "SPHERE_CRASH_CHILD_DIR";
const EVENTS_PER_APPEND: usize = 3;

/// The child: writes until killed. Prints one line per acknowledged append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by crash_recovery_keeps_every_acknowledged_append as a child process"]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let log = SqliteLog::open(&dir).unwrap();
    let shared: Arc<dyn EventLog> = Arc::new(log.clone());
    let stats = StatsProjection::open(&dir.join("projections")).unwrap();
    let _projection = runner::spawn(shared.clone(), stats);
    let (acks, mut ack_lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    for writer in 0..32u32 {
        let log = log.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                n += 1;
                let batch = uuid::Uuid::new_v4();
                let stream = format!("Crash-{}", (writer as u64 * 7 + n) % 50);
                let events: Vec<_> = (0..EVENTS_PER_APPEND)
                    .map(|i| {
                        NewEvent::new(
                            "Appended",
                            format!(
                                r#"{{"batch":"{batch}","i":{i},"pad":"{}"}}"#,
                                "p".repeat(200)
                            ),
                        )
                    })
                    .collect();
                let ids: Vec<_> = events.iter().map(|e| e.event_id.to_string()).collect();
                if let Ok(result) = log.append(&stream, ExpectedRevision::Any, events).await {
                    let _ = acks.send(format!(
                        "{stream} {} {} {}",
                        result.next_revision,
                        result.position.0,
                        ids.join(",")
                    ));
                }
            }
        });
    }
    drop(acks);
    let mut out = std::io::stdout().lock();
    while let Some(line) = ack_lines.recv().await {
        // Printed only after the append was acknowledged, i.e. durably committed.
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

struct Ack {
    stream: String,
    last_revision: u64,
    position: u64,
    ids: Vec<String>,
}

fn run_child_and_kill(dir: &std::path::Path, after: Duration) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let mut parts = line.split(' ');
                let stream = parts.next()?.to_owned();
                if !stream.starts_with("Crash-") {
                    return None;
                }
                Some(Ack {
                    stream,
                    last_revision: parts.next()?.parse().ok()?,
                    position: parts.next()?.parse().ok()?,
                    ids: parts.next()?.split(',').map(str::to_owned).collect(),
                })
            })
            .collect::<Vec<_>>()
    });
    std::thread::sleep(after);
    // SIGKILL: no destructor, no flush, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_keeps_every_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<Ack> = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..6 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let after = Duration::from_millis(300 + rng % 700);
        let acks = run_child_and_kill(dir.path(), after);
        assert!(
            !acks.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        acknowledged.extend(acks);
        verify(dir.path(), &acknowledged).await;
    }
}

async fn verify(dir: &std::path::Path, acknowledged: &[Ack]) {
    let log = SqliteLog::open(dir).unwrap();
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = log
            .read_all(after, &EventFilter::all(), 10_000)
            .await
            .unwrap();
        let done = page.len() < 10_000;
        after = page.last().map(|e| e.position).or(after);
        all.extend(page);
        if done {
            break;
        }
    }
    // Positions strictly increasing, hence unique.
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    // Per stream: revisions 0..n with no gap or duplicate.
    let mut by_stream: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &all {
        by_stream.entry(&e.stream).or_default().push(e.revision);
    }
    for (stream, revisions) in &by_stream {
        let expected: Vec<u64> = (0..revisions.len() as u64).collect();
        assert_eq!(revisions, &expected, "revisions of {stream}");
    }
    // No partial multi-event append: each batch has all its events, contiguous in its stream.
    let mut batches: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
    for e in &all {
        let body: serde_json::Value = e.json().unwrap();
        batches
            .entry(body["batch"].as_str().unwrap().to_owned())
            .or_default()
            .push((e.stream.clone(), e.revision, body["i"].as_u64().unwrap()));
    }
    for (batch, events) in &batches {
        assert_eq!(events.len(), EVENTS_PER_APPEND, "batch {batch} is partial");
        assert!(events.iter().all(|(s, _, _)| s == &events[0].0));
        for (k, (_, revision, i)) in events.iter().enumerate() {
            assert_eq!(*i, k as u64);
            assert_eq!(*revision, events[0].1 + k as u64);
        }
    }
    // Every acknowledged append is present, exactly where it was acknowledged.
    let by_id: HashMap<String, (&str, u64, u64)> = all
        .iter()
        .map(|e| {
            (
                e.event_id.to_string(),
                (e.stream.as_str(), e.revision, e.position.0),
            )
        })
        .collect();
    for ack in acknowledged {
        let last = ack.ids.last().unwrap();
        let (stream, revision, position) = by_id
            .get(last)
            .unwrap_or_else(|| panic!("acknowledged event {last} is missing"));
        assert_eq!(*stream, ack.stream);
        assert_eq!(*revision, ack.last_revision);
        assert_eq!(*position, ack.position);
        assert!(ack.ids.iter().all(|id| by_id.contains_key(id)));
    }
    let ids: HashSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len());

    // The projection's stored checkpoint agrees with its stored data...
    let stats = StatsProjection::open(&dir.join("projections")).unwrap();
    let stored = stats.view().read().unwrap().clone();
    if let Some(checkpoint) = stored.checkpoint {
        let upto = all.iter().filter(|e| e.position <= checkpoint).count() as u64;
        assert_eq!(stored.events, upto, "checkpoint and data disagree");
    }
    // ...and resuming from it reaches exactly the log's content.
    let shared: Arc<dyn EventLog> = Arc::new(log.clone());
    let view = stats.view();
    let handle = runner::spawn(shared, stats);
    let head = all.last().map(|e| e.position).unwrap_or(Position(0));
    handle
        .wait_for(head, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(view.read().unwrap().events, all.len() as u64);
    log.close().await.unwrap();
}
