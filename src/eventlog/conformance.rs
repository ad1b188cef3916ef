//! The conformance suite every [`EventLog`] implementation must pass.
//!
//! Written against the trait only, and safe to run against a shared, non-empty store (a real
//! KurrentDB): every case uses stream categories unique to the run and measures `$all`
//! relative to the head it saw when it started.
//!
//! A backend's test file runs every case with one line:
//! `sphere::conformance_tests!(MyHarness::new());` (the expression is evaluated per case).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use super::{
    Direction, EventFilter, EventLog, EventLogError, EventMetadata, ExpectedRevision, NewEvent,
    Position, RecordedEvent, StreamStart, StreamWrite, SubscriptionMessage,
};

/// How the suite obtains stores of the implementation under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A store to run one case against (it may hold other data already).
    async fn open(&self) -> Arc<dyn EventLog>;
    /// Closes `log` and opens the same store again, as after a process restart.
    async fn reopen(&self, log: Arc<dyn EventLog>) -> Arc<dyn EventLog>;
}

/// Generates one `#[tokio::test]` per conformance case for a harness expression.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            new_stream_starts_at_revision_zero,
            expected_revision_modes_are_enforced,
            concurrent_writers_with_the_same_expected_revision_only_one_wins,
            multi_event_append_is_atomic,
            all_is_ordered_by_commit,
            category_read_returns_only_that_category,
            all_reads_backwards_newest_first_with_filters,
            streams_read_forwards_and_backwards,
            missing_stream_reads_empty,
            retried_append_is_idempotent,
            event_bytes_and_metadata_round_trip,
            subscription_from_the_past_continues_live_without_gaps_or_doubles,
            subscription_filters_by_event_type,
            filtered_subscription_reports_progress_past_what_it_filters_out,
            multi_stream_commit_is_all_or_nothing,
            concurrent_multi_stream_commits_respect_each_expected_revision,
            reopened_store_keeps_everything,
            cqrs_aggregates_persist_and_reload,
        );
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                $crate::eventlog::conformance::$case(&$harness).await;
            }
        )*
    };
}

/// A category name no other run uses (categories cannot contain `-`).
fn fresh_category(label: &str) -> String {
    format!("{label}{}", Uuid::new_v4().simple())
}

fn event(kind: &str, n: usize) -> NewEvent {
    NewEvent::new(kind, format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(32)))
}

fn events(kind: &str, count: usize) -> Vec<NewEvent> {
    (0..count).map(|n| event(kind, n)).collect()
}

fn n_of(e: &RecordedEvent) -> u64 {
    let v: serde_json::Value = e.json().expect("suite events are JSON");
    v["n"].as_u64().expect("suite events carry n")
}

async fn all_after(
    log: &dyn EventLog,
    after: Option<Position>,
    filter: &EventFilter,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let page = log.read_all(cursor, filter, 500).await.expect("read_all");
        let done = page.len() < 500;
        cursor = page.last().map(|e| e.position).or(cursor);
        out.extend(page);
        if done {
            return out;
        }
    }
}

pub async fn new_stream_starts_at_revision_zero(h: &dyn Harness) {
    let log = h.open().await;
    let stream = format!("{}-1", fresh_category("rev"));
    assert_eq!(log.stream_revision(&stream).await.unwrap(), None);
    let first = log
        .append(&stream, ExpectedRevision::NoStream, events("E", 1))
        .await
        .unwrap();
    assert_eq!(first.next_revision, 0);
    let second = log
        .append(&stream, ExpectedRevision::Exact(0), events("E", 2))
        .await
        .unwrap();
    assert_eq!(second.next_revision, 2);
    assert!(second.position > first.position);
    assert_eq!(log.stream_revision(&stream).await.unwrap(), Some(2));
}

pub async fn expected_revision_modes_are_enforced(h: &dyn Harness) {
    let log = h.open().await;
    let cat = fresh_category("exp");
    let missing = format!("{cat}-missing");
    let stream = format!("{cat}-1");

    let err = log
        .append(&missing, ExpectedRevision::StreamExists, events("E", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventLogError::WrongExpectedVersion { actual: None, .. }
        ),
        "{err}"
    );
    let err = log
        .append(&missing, ExpectedRevision::Exact(0), events("E", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventLogError::WrongExpectedVersion { actual: None, .. }
        ),
        "{err}"
    );

    log.append(&stream, ExpectedRevision::Any, events("E", 1))
        .await
        .unwrap();
    let err = log
        .append(&stream, ExpectedRevision::NoStream, events("E", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventLogError::WrongExpectedVersion {
                actual: Some(0),
                ..
            }
        ),
        "{err}"
    );
    let err = log
        .append(&stream, ExpectedRevision::Exact(5), events("E", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            EventLogError::WrongExpectedVersion {
                actual: Some(0),
                ..
            }
        ),
        "{err}"
    );
    log.append(&stream, ExpectedRevision::StreamExists, events("E", 1))
        .await
        .unwrap();
    log.append(&stream, ExpectedRevision::Exact(1), events("E", 1))
        .await
        .unwrap();
    log.append(&stream, ExpectedRevision::Any, events("E", 1))
        .await
        .unwrap();
    // The refused appends wrote nothing.
    assert_eq!(log.stream_revision(&stream).await.unwrap(), Some(3));
    assert_eq!(log.stream_revision(&missing).await.unwrap(), None);
}

pub async fn concurrent_writers_with_the_same_expected_revision_only_one_wins(h: &dyn Harness) {
    let log = h.open().await;
    let stream = format!("{}-1", fresh_category("race"));
    log.append(&stream, ExpectedRevision::NoStream, events("E", 1))
        .await
        .unwrap();
    for round in 0..5u64 {
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let log = log.clone();
                let stream = stream.clone();
                tokio::spawn(async move {
                    log.append(&stream, ExpectedRevision::Exact(round), events("E", 1))
                        .await
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => wins += 1,
                Err(e) => assert!(e.is_wrong_expected_version(), "{e}"),
            }
        }
        assert_eq!(wins, 1, "exactly one writer wins round {round}");
    }
    assert_eq!(log.stream_revision(&stream).await.unwrap(), Some(5));
}

pub async fn multi_event_append_is_atomic(h: &dyn Harness) {
    let log = h.open().await;
    let stream = format!("{}-1", fresh_category("atom"));
    let result = log
        .append(&stream, ExpectedRevision::NoStream, events("E", 3))
        .await
        .unwrap();
    assert_eq!(result.next_revision, 2);
    let read = log
        .read_stream(&stream, Direction::Forwards, StreamStart::Origin, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
    for (i, e) in read.iter().enumerate() {
        assert_eq!(e.revision, i as u64);
        assert_eq!(n_of(e), i as u64);
    }
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(read[2].position, result.position);
    // A refused multi-event append leaves no part behind.
    let err = log
        .append(&stream, ExpectedRevision::Exact(0), events("E", 3))
        .await
        .unwrap_err();
    assert!(err.is_wrong_expected_version());
    let read = log
        .read_stream(&stream, Direction::Forwards, StreamStart::Origin, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 3);
}

pub async fn all_is_ordered_by_commit(h: &dyn Harness) {
    let log = h.open().await;
    let start = log.head().await.unwrap();
    let cat = fresh_category("order");
    let mut appended = Vec::new();
    for i in 0..20 {
        let stream = format!("{cat}-{}", i % 3);
        let r = log
            .append(&stream, ExpectedRevision::Any, vec![event("E", i)])
            .await
            .unwrap();
        appended.push(r.position);
    }
    assert!(appended.windows(2).all(|w| w[0] < w[1]));
    let ours = all_after(&*log, start, &EventFilter::categories([cat.as_str()])).await;
    assert_eq!(ours.len(), 20);
    let positions: Vec<_> = ours.iter().map(|e| e.position).collect();
    assert_eq!(positions, appended);
    assert_eq!(
        ours.iter().map(n_of).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    assert!(log.head().await.unwrap() >= appended.last().copied());
    // Paging by position resumes exactly after the last event seen.
    let first_page = log
        .read_all(start, &EventFilter::categories([cat.as_str()]), 7)
        .await
        .unwrap();
    assert_eq!(first_page.len(), 7);
    let rest = all_after(
        &*log,
        first_page.last().map(|e| e.position),
        &EventFilter::categories([cat.as_str()]),
    )
    .await;
    assert_eq!(rest.len(), 13);
    assert_eq!(n_of(&rest[0]), 7);
}

/// Appends `n` events of type A to streams of category `a` and `n` of type B to `b`,
/// alternating, one stream per event.
async fn append_interleaved(log: &dyn EventLog, a: &str, b: &str, n: usize) {
    for i in 0..n {
        for (category, kind) in [(a, "A"), (b, "B")] {
            log.append(
                &format!("{category}-{i}"),
                ExpectedRevision::Any,
                vec![event(kind, i)],
            )
            .await
            .unwrap();
        }
    }
}

pub async fn category_read_returns_only_that_category(h: &dyn Harness) {
    let log = h.open().await;
    let start = log.head().await.unwrap();
    let a = fresh_category("cata");
    let b = fresh_category("catb");
    append_interleaved(log.as_ref(), &a, &b, 5).await;
    let read = log.read_category(&a, start, 100).await.unwrap();
    assert_eq!(read.len(), 5);
    assert!(read
        .iter()
        .all(|e| e.category() == a && e.event_type == "A"));
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    let after_two = log
        .read_category(&a, Some(read[1].position), 100)
        .await
        .unwrap();
    assert_eq!(after_two.len(), 3);
}

pub async fn all_reads_backwards_newest_first_with_filters(h: &dyn Harness) {
    let log = h.open().await;
    let a = fresh_category("backa");
    let b = fresh_category("backb");
    append_interleaved(log.as_ref(), &a, &b, 7).await;
    // From the newest: the last three of category a, newest first.
    let only_a = EventFilter::categories([a.as_str()]);
    let newest = log.read_all_backwards(None, &only_a, 3).await.unwrap();
    assert_eq!(newest.iter().map(n_of).collect::<Vec<_>>(), vec![6, 5, 4]);
    assert!(newest.iter().all(|e| e.category() == a));
    // Paging strictly before the last position seen reaches the first event exactly once.
    let mut seen: Vec<u64> = newest.iter().map(n_of).collect();
    let mut before = newest.last().map(|e| e.position);
    loop {
        let page = log.read_all_backwards(before, &only_a, 3).await.unwrap();
        assert!(page.windows(2).all(|w| w[0].position > w[1].position));
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.position);
        seen.extend(page.iter().map(n_of));
    }
    assert_eq!(seen, vec![6, 5, 4, 3, 2, 1, 0]);
    // Event-type filters work backwards too, and the result mirrors the forward read.
    let only_b = EventFilter {
        categories: vec![b.clone()],
        event_types: vec!["B".into()],
        ..EventFilter::default()
    };
    let back = log.read_all_backwards(None, &only_b, 100).await.unwrap();
    let mut forward = all_after(log.as_ref(), None, &only_b).await;
    forward.reverse();
    assert_eq!(
        back.iter().map(|e| e.position).collect::<Vec<_>>(),
        forward.iter().map(|e| e.position).collect::<Vec<_>>()
    );
}

pub async fn streams_read_forwards_and_backwards(h: &dyn Harness) {
    let log = h.open().await;
    let stream = format!("{}-1", fresh_category("dir"));
    log.append(&stream, ExpectedRevision::NoStream, events("E", 10))
        .await
        .unwrap();
    let revs = |v: Vec<RecordedEvent>| v.iter().map(|e| e.revision).collect::<Vec<_>>();
    let fwd = log
        .read_stream(&stream, Direction::Forwards, StreamStart::Revision(4), 3)
        .await
        .unwrap();
    assert_eq!(revs(fwd), vec![4, 5, 6]);
    let back = log
        .read_stream(&stream, Direction::Backwards, StreamStart::Origin, 3)
        .await
        .unwrap();
    assert_eq!(revs(back), vec![9, 8, 7]);
    let back = log
        .read_stream(&stream, Direction::Backwards, StreamStart::Revision(2), 10)
        .await
        .unwrap();
    assert_eq!(revs(back), vec![2, 1, 0]);
    let past_end = log
        .read_stream(&stream, Direction::Forwards, StreamStart::Revision(10), 10)
        .await
        .unwrap();
    assert!(past_end.is_empty());
}

pub async fn missing_stream_reads_empty(h: &dyn Harness) {
    let log = h.open().await;
    let stream = format!("{}-nothing", fresh_category("none"));
    for direction in [Direction::Forwards, Direction::Backwards] {
        let read = log
            .read_stream(&stream, direction, StreamStart::Origin, 10)
            .await
            .unwrap();
        assert!(read.is_empty());
    }
    assert_eq!(log.stream_revision(&stream).await.unwrap(), None);
}

pub async fn retried_append_is_idempotent(h: &dyn Harness) {
    let log = h.open().await;
    let cat = fresh_category("idem");
    let stream = format!("{cat}-1");
    let batch = events("E", 3);
    let first = log
        .append(&stream, ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    // The same events again, as a client retrying after a lost acknowledgement.
    let again = log
        .append(&stream, ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(again.next_revision, first.next_revision);
    let again_any = log
        .append(&stream, ExpectedRevision::Any, batch.clone())
        .await
        .unwrap();
    assert_eq!(again_any.next_revision, first.next_revision);
    let read = log
        .read_stream(&stream, Direction::Forwards, StreamStart::Origin, 100)
        .await
        .unwrap();
    assert_eq!(read.len(), 3, "a retry writes nothing");
    // Events go on normally afterwards.
    let next = log
        .append(&stream, ExpectedRevision::Exact(2), events("E", 1))
        .await
        .unwrap();
    assert_eq!(next.next_revision, 3);
}

pub async fn event_bytes_and_metadata_round_trip(h: &dyn Harness) {
    let log = h.open().await;
    let stream = format!("{}-1", fresh_category("bytes"));
    // FHIR decimals must keep their precision: the log stores bytes, not parsed JSON.
    let body =
        r#"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"mg"},"ü":"ß"}"#;
    let correlation = Uuid::new_v4();
    let metadata = EventMetadata {
        correlation_id: Some(correlation),
        causation_id: Some(Uuid::nil()),
        actor: Some(super::Actor {
            client_id: Some("app-1".into()),
            user: Some("dr-who".into()),
            token_id: Some("jti-1".into()),
        }),
        commit_ms: 0,
        extra: None,
    };
    let new = NewEvent::new("ResourceCreated", body).with_metadata(metadata.clone());
    let id = new.event_id;
    let before = now_ms();
    log.append(&stream, ExpectedRevision::NoStream, vec![new])
        .await
        .unwrap();
    let after = now_ms();
    let read = log
        .read_stream(&stream, Direction::Forwards, StreamStart::Origin, 1)
        .await
        .unwrap();
    let e = &read[0];
    assert_eq!(&e.data[..], body.as_bytes());
    assert_eq!(e.event_id, id);
    assert_eq!(e.event_type, "ResourceCreated");
    assert_eq!(e.metadata.correlation_id, Some(correlation));
    assert_eq!(e.metadata.causation_id, Some(Uuid::nil()));
    assert_eq!(e.metadata.actor, metadata.actor);
    assert!(
        e.commit_ms() >= before - 1000 && e.commit_ms() <= after + 1000,
        "commit time is stamped by the log in milliseconds"
    );
}

pub async fn subscription_from_the_past_continues_live_without_gaps_or_doubles(h: &dyn Harness) {
    let log = h.open().await;
    let start = log.head().await.unwrap();
    let cat = fresh_category("sub");
    const HISTORICAL: usize = 1500;
    const WRITERS: usize = 4;
    const LIVE_EACH: usize = 300;
    for chunk in 0..(HISTORICAL / 100) {
        let batch = (0..100).map(|i| event("H", chunk * 100 + i)).collect();
        log.append(&format!("{cat}-hist{chunk}"), ExpectedRevision::Any, batch)
            .await
            .unwrap();
    }
    let mut subscription = log
        .subscribe(start, EventFilter::categories([cat.as_str()]))
        .await
        .unwrap();
    // Noise in another category must not reach the subscriber.
    let noise = format!("{}-1", fresh_category("noise"));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = log.clone();
            let cat = cat.clone();
            let noise = noise.clone();
            tokio::spawn(async move {
                for i in 0..LIVE_EACH {
                    log.append(
                        &format!("{cat}-w{w}"),
                        ExpectedRevision::Any,
                        vec![event("L", i)],
                    )
                    .await
                    .unwrap();
                    if i % 10 == 0 {
                        log.append(&noise, ExpectedRevision::Any, vec![event("N", i)])
                            .await
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    let total = HISTORICAL + WRITERS * LIVE_EACH;
    let mut seen_ids = HashSet::new();
    let mut last_position = start;
    let mut checkpoint = start;
    let mut caught_up = 0;
    let mut received = 0;
    while received < total {
        let message = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .expect("subscription stalled")
            .expect("subscription ended")
            .expect("subscription failed");
        match message {
            SubscriptionMessage::CaughtUp => {
                caught_up += 1;
                assert!(
                    received >= HISTORICAL,
                    "caught up before history was delivered"
                );
            }
            SubscriptionMessage::Event(e) => {
                assert_eq!(e.category(), cat);
                assert!(Some(e.position) > last_position, "out of order or doubled");
                assert!(
                    Some(e.position) > checkpoint,
                    "an event at or below a checkpoint"
                );
                last_position = Some(e.position);
                assert!(seen_ids.insert(e.event_id), "delivered twice");
                received += 1;
            }
            SubscriptionMessage::Checkpoint(p) => {
                assert!(Some(p) >= last_position, "a checkpoint below an event");
                assert!(Some(p) >= checkpoint, "checkpoints went backwards");
                checkpoint = Some(p);
            }
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(caught_up, 1);
    // Nothing beyond what was written arrives (checkpoints past the last noise may).
    loop {
        match tokio::time::timeout(Duration::from_millis(300), subscription.next()).await {
            Err(_) => break,
            Ok(Some(Ok(SubscriptionMessage::Checkpoint(p)))) => {
                assert!(Some(p) >= checkpoint, "checkpoints went backwards");
                checkpoint = Some(p);
            }
            extra => panic!("unexpected extra message: {extra:?}"),
        }
    }
    // And the subscription saw exactly what a read of $all sees.
    let read = all_after(&*log, start, &EventFilter::categories([cat.as_str()])).await;
    assert_eq!(read.len(), total);
    assert!(read.iter().all(|e| seen_ids.contains(&e.event_id)));
}

pub async fn subscription_filters_by_event_type(h: &dyn Harness) {
    let log = h.open().await;
    let start = log.head().await.unwrap();
    let cat = fresh_category("types");
    let kind = format!("Wanted{}", Uuid::new_v4().simple());
    let mut subscription = log
        .subscribe(start, EventFilter::event_types([kind.as_str()]))
        .await
        .unwrap();
    for i in 0..10 {
        let t = if i % 2 == 0 { kind.as_str() } else { "Other" };
        log.append(
            &format!("{cat}-1"),
            ExpectedRevision::Any,
            vec![event(t, i)],
        )
        .await
        .unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        match tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("stalled")
            .expect("ended")
            .expect("failed")
        {
            SubscriptionMessage::Event(e) => {
                assert_eq!(e.event_type, kind);
                got.push(n_of(&e));
            }
            SubscriptionMessage::CaughtUp | SubscriptionMessage::Checkpoint(_) => {}
        }
    }
    assert_eq!(got, vec![0, 2, 4, 6, 8]);
}

/// A live subscriber is told, without waiting for more traffic, that the log has moved past
/// events its filter dropped: a projection waiting for its own write must not hang when the
/// newest event is one it does not take. Both inclusion and exclusion filters.
pub async fn filtered_subscription_reports_progress_past_what_it_filters_out(h: &dyn Harness) {
    let log = h.open().await;
    let start = log.head().await.unwrap();
    let wanted = fresh_category("kept");
    let dropped = fresh_category("dropped");
    let filters = [
        EventFilter::categories([wanted.as_str()]),
        EventFilter::all().except_categories([dropped.as_str()]),
    ];
    for filter in filters {
        let mut subscription = log.subscribe(start, filter.clone()).await.unwrap();
        let kept = log
            .append(
                &format!("{wanted}-1"),
                ExpectedRevision::Any,
                vec![event("K", 0)],
            )
            .await
            .unwrap();
        let skipped = log
            .append(
                &format!("{dropped}-1"),
                ExpectedRevision::Any,
                vec![event("D", 1)],
            )
            .await
            .unwrap();
        let mut delivered = Vec::new();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), subscription.next())
                .await
                .unwrap_or_else(|_| panic!("no checkpoint past a dropped event ({filter:?})"))
                .expect("ended")
                .expect("failed");
            match message {
                SubscriptionMessage::Event(e) => {
                    assert!(filter.matches(&e.stream, &e.event_type), "{e:?}");
                    delivered.push(e.position);
                }
                SubscriptionMessage::Checkpoint(p) if p >= skipped.position => break,
                SubscriptionMessage::Checkpoint(_) | SubscriptionMessage::CaughtUp => {}
            }
        }
        assert!(delivered.contains(&kept.position), "{filter:?}");
    }
}

pub async fn multi_stream_commit_is_all_or_nothing(h: &dyn Harness) {
    let log = h.open().await;
    let cat = fresh_category("tx");
    let a = format!("{cat}-a");
    let b = format!("{cat}-b");
    let c = format!("{cat}-c");
    log.append(&b, ExpectedRevision::NoStream, events("E", 1))
        .await
        .unwrap();
    let start = log.head().await.unwrap();
    // b's expectation is wrong: nothing of the commit may appear anywhere.
    let err = log
        .append_multi(vec![
            StreamWrite {
                stream: a.clone(),
                expected: ExpectedRevision::NoStream,
                events: events("T", 2),
            },
            StreamWrite {
                stream: b.clone(),
                expected: ExpectedRevision::Exact(7),
                events: events("T", 1),
            },
            StreamWrite {
                stream: c.clone(),
                expected: ExpectedRevision::Any,
                events: events("T", 1),
            },
        ])
        .await
        .unwrap_err();
    match &err {
        EventLogError::WrongExpectedVersion { stream, actual, .. } => {
            assert_eq!(stream, &b);
            assert_eq!(*actual, Some(0));
        }
        other => panic!("expected a conflict on {b}, got {other}"),
    }
    assert_eq!(log.stream_revision(&a).await.unwrap(), None);
    assert_eq!(log.stream_revision(&b).await.unwrap(), Some(0));
    assert_eq!(log.stream_revision(&c).await.unwrap(), None);
    assert!(
        all_after(&*log, start, &EventFilter::categories([cat.as_str()]))
            .await
            .is_empty()
    );

    let results = log
        .append_multi(vec![
            StreamWrite {
                stream: a.clone(),
                expected: ExpectedRevision::NoStream,
                events: events("T", 2),
            },
            StreamWrite {
                stream: b.clone(),
                expected: ExpectedRevision::Exact(0),
                events: events("T", 1),
            },
        ])
        .await
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].next_revision, 1);
    assert_eq!(results[1].next_revision, 1);
    let ours = all_after(&*log, start, &EventFilter::categories([cat.as_str()])).await;
    assert_eq!(ours.len(), 3);
    // Refused: the same stream twice in one commit.
    let err = log
        .append_multi(vec![
            StreamWrite {
                stream: c.clone(),
                expected: ExpectedRevision::Any,
                events: events("T", 1),
            },
            StreamWrite {
                stream: c.clone(),
                expected: ExpectedRevision::Any,
                events: events("T", 1),
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, EventLogError::InvalidAppend(_)), "{err}");
    assert_eq!(log.stream_revision(&c).await.unwrap(), None);
}

pub async fn concurrent_multi_stream_commits_respect_each_expected_revision(h: &dyn Harness) {
    let log = h.open().await;
    let cat = fresh_category("txrace");
    let shared = format!("{cat}-shared");
    log.append(&shared, ExpectedRevision::NoStream, events("E", 1))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let log = log.clone();
            let cat = cat.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                log.append_multi(vec![
                    StreamWrite {
                        stream: format!("{cat}-own{i}"),
                        expected: ExpectedRevision::NoStream,
                        events: events("T", 1),
                    },
                    StreamWrite {
                        stream: shared,
                        expected: ExpectedRevision::Exact(0),
                        events: events("T", 1),
                    },
                ])
                .await
                .map(|_| i)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(e) => assert!(e.is_wrong_expected_version(), "{e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    for i in 0..12 {
        let own = log.stream_revision(&format!("{cat}-own{i}")).await.unwrap();
        assert_eq!(
            own.is_some(),
            winners.contains(&i),
            "loser {i} left a trace"
        );
    }
}

pub async fn reopened_store_keeps_everything(h: &dyn Harness) {
    let log = h.open().await;
    let start = log.head().await.unwrap();
    let cat = fresh_category("reopen");
    let stream = format!("{cat}-1");
    let written = log
        .append(&stream, ExpectedRevision::NoStream, events("E", 5))
        .await
        .unwrap();
    let log = h.reopen(log).await;
    assert_eq!(log.stream_revision(&stream).await.unwrap(), Some(4));
    assert!(log.head().await.unwrap() >= Some(written.position));
    let next = log
        .append(&stream, ExpectedRevision::Exact(4), events("E", 1))
        .await
        .unwrap();
    assert_eq!(next.next_revision, 5);
    assert!(
        next.position > written.position,
        "positions keep increasing after a restart"
    );
    let ours = all_after(&*log, start, &EventFilter::categories([cat.as_str()])).await;
    assert_eq!(ours.len(), 6);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A small cqrs-es aggregate: the repository must persist its events and rebuild its state.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Tally {
    total: i64,
    closed: bool,
}

pub enum TallyCommand {
    Add(i64),
    Close,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TallyEvent {
    Added { amount: i64 },
    Closed,
}

impl cqrs_es::DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Added { .. } => "TallyAdded".into(),
            Self::Closed => "TallyClosed".into(),
        }
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the tally is closed")]
pub struct TallyClosed;

impl cqrs_es::Aggregate for Tally {
    const TYPE: &'static str = "conformancetally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = TallyClosed;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), TallyClosed> {
        if self.closed {
            return Err(TallyClosed);
        }
        let event = match command {
            TallyCommand::Add(amount) => TallyEvent::Added { amount },
            TallyCommand::Close => TallyEvent::Closed,
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: TallyEvent) {
        match event {
            TallyEvent::Added { amount } => self.total += amount,
            TallyEvent::Closed => self.closed = true,
        }
    }
}

pub async fn cqrs_aggregates_persist_and_reload(h: &dyn Harness) {
    use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore, PersistenceError};
    use cqrs_es::{AggregateError, CqrsFramework};

    let log = h.open().await;
    let repo = super::cqrs::EventLogRepository::new(log.clone());
    let id = Uuid::new_v4().simple().to_string();
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Tally>::new_event_store(repo.clone()),
        vec![],
        (),
    );
    cqrs.execute(&id, TallyCommand::Add(5)).await.unwrap();
    cqrs.execute(&id, TallyCommand::Add(7)).await.unwrap();
    cqrs.execute(&id, TallyCommand::Close).await.unwrap();

    // A second framework on a reopened store rebuilds the state from the log alone.
    let log = h.reopen(log).await;
    let repo = super::cqrs::EventLogRepository::new(log.clone());
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, Tally>::new_event_store(repo.clone()),
        vec![],
        (),
    );
    let refused = cqrs.execute(&id, TallyCommand::Add(1)).await;
    assert!(matches!(
        refused,
        Err(AggregateError::UserError(TallyClosed))
    ));

    let events = repo.get_events::<Tally>(&id).await.unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(events[0].event_type, "TallyAdded");
    assert_eq!(events[0].event_version, "1");
    assert_eq!(
        events[0].payload,
        serde_json::json!({"Added": {"amount": 5}})
    );
    let last = repo.get_last_events::<Tally>(&id, 2).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].sequence, 3);
    // The stream is the log's: `{TYPE}-{id}`, revision = sequence - 1.
    assert_eq!(
        log.stream_revision(&format!("conformancetally-{id}"))
            .await
            .unwrap(),
        Some(2)
    );
    // A stale writer gets cqrs-es's optimistic lock error.
    let stale = cqrs_es::persist::SerializedEvent::new(
        id.clone(),
        2,
        <Tally as cqrs_es::Aggregate>::TYPE.into(),
        "TallyAdded".into(),
        "1".into(),
        serde_json::json!({"Added": {"amount": 1}}),
        serde_json::json!({}),
    );
    let err = repo.persist::<Tally>(&[stale], None).await.unwrap_err();
    assert!(matches!(err, PersistenceError::OptimisticLockError));
    // Replay of the whole aggregate type includes this instance.
    let mut all = repo.stream_all_events::<Tally>().await.unwrap();
    let mut ours = 0;
    while let Some(event) = all.next::<Tally>(&[]).await {
        if event.unwrap().aggregate_id == id {
            ours += 1;
        }
    }
    assert_eq!(ours, 3);
}
