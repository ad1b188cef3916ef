//! `sphere migrate` copies an embedded log into KurrentDB (here: the protocol test double,
//! through the official client) preserving streams, revisions, event ids and order; it
//! resumes after an interruption and refuses a target that has diverged.

use std::sync::Arc;

use sphere::eventlog::kurrentdb::testserver::ProtocolTestDouble;
use sphere::eventlog::kurrentdb::KurrentDbLog;
use sphere::eventlog::migrate::{migrate, migrate_locations, MigrateError, MigrateOptions};
use sphere::eventlog::sqlite::SqliteLog;
use sphere::eventlog::{
    Actor, EventFilter, EventLog, EventMetadata, ExpectedRevision, NewEvent, RecordedEvent,
    StreamWrite,
};
use uuid::Uuid;

fn quiet() -> MigrateOptions {
    MigrateOptions {
        progress: false,
        max_batch: 7,
    }
}

/// A source log with interleaved single- and multi-event appends and a multi-stream commit.
async fn filled_source(dir: &std::path::Path) -> Arc<SqliteLog> {
    let log = Arc::new(SqliteLog::open(dir).expect("source log"));
    for i in 0..60u32 {
        let stream = format!("Patient-{}", i % 7);
        let events = (0..(1 + i % 3))
            .map(|k| {
                NewEvent::new(
                    "ResourceUpdated",
                    format!(r#"{{"i":{i},"k":{k},"v":1.50}}"#),
                )
                .with_metadata(EventMetadata {
                    correlation_id: Some(Uuid::new_v4()),
                    actor: Some(Actor {
                        client_id: Some("app".into()),
                        ..Actor::default()
                    }),
                    ..EventMetadata::default()
                })
            })
            .collect();
        log.append(&stream, ExpectedRevision::Any, events)
            .await
            .expect("append");
    }
    log.append_multi(vec![
        StreamWrite {
            stream: "Observation-1".into(),
            expected: ExpectedRevision::NoStream,
            events: vec![NewEvent::new("ResourceCreated", r#"{"o":1}"#)],
        },
        StreamWrite {
            stream: "Patient-0".into(),
            expected: ExpectedRevision::Any,
            events: vec![NewEvent::new("ResourceUpdated", r#"{"p":0}"#)],
        },
    ])
    .await
    .expect("multi-stream commit");
    log
}

async fn all(log: &dyn EventLog) -> Vec<RecordedEvent> {
    log.read_all(None, &EventFilter::all(), usize::MAX)
        .await
        .expect("read all")
}

struct Target {
    _dir: tempfile::TempDir,
    double: ProtocolTestDouble,
    log: KurrentDbLog,
}

async fn target() -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let backing: Arc<dyn EventLog> = Arc::new(SqliteLog::open(dir.path()).expect("backing"));
    let double = ProtocolTestDouble::start(backing).await.expect("double");
    let log = KurrentDbLog::connect(&double.url()).await.expect("connect");
    Target {
        _dir: dir,
        double,
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_preserves_streams_revisions_ids_and_order() {
    let src_dir = tempfile::tempdir().unwrap();
    let source = filled_source(src_dir.path()).await;
    let target = target().await;

    let report = migrate(&*source, &target.log, &quiet()).await.unwrap();
    let source_events = all(&*source).await;
    assert_eq!(report.source_events, source_events.len() as u64);
    assert_eq!(report.copied, source_events.len() as u64);
    assert_eq!(report.already_present, 0);
    assert_eq!(report.verified, source_events.len() as u64);
    assert_eq!(report.streams, 8);

    let copied = all(&target.log).await;
    let key = |e: &RecordedEvent| {
        (
            e.stream.clone(),
            e.revision,
            e.event_id,
            e.event_type.clone(),
            e.data.clone(),
            e.metadata.correlation_id,
            e.metadata.actor.clone(),
        )
    };
    assert_eq!(
        copied.iter().map(key).collect::<Vec<_>>(),
        source_events.iter().map(key).collect::<Vec<_>>()
    );

    // A second run finds everything in place and copies nothing.
    let again = migrate(&*source, &target.log, &quiet()).await.unwrap();
    assert_eq!(again.copied, 0);
    assert_eq!(again.already_present, source_events.len() as u64);
    assert_eq!(all(&target.log).await.len(), source_events.len());
    target.double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_migration_resumes_where_it_stopped() {
    let src_dir = tempfile::tempdir().unwrap();
    let source = filled_source(src_dir.path()).await;
    let target = target().await;
    let source_events = all(&*source).await;

    // An earlier run copied the first 40 events, the last of them only in part of its batch.
    for e in &source_events[..40] {
        let expected = match e.revision {
            0 => ExpectedRevision::NoStream,
            r => ExpectedRevision::Exact(r - 1),
        };
        let copy = NewEvent::new(e.event_type.clone(), e.data.clone())
            .with_id(e.event_id)
            .with_metadata(e.metadata.clone());
        target
            .log
            .append(&e.stream, expected, vec![copy])
            .await
            .unwrap();
    }
    let report = migrate(&*source, &target.log, &quiet()).await.unwrap();
    assert_eq!(report.already_present, 40);
    assert_eq!(report.copied, source_events.len() as u64 - 40);
    assert_eq!(report.verified, source_events.len() as u64);
    let ids: Vec<_> = all(&target.log).await.iter().map(|e| e.event_id).collect();
    assert_eq!(
        ids,
        source_events.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    target.double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_with_different_events_in_the_same_stream_is_refused() {
    let src_dir = tempfile::tempdir().unwrap();
    let source = filled_source(src_dir.path()).await;
    let target = target().await;
    target
        .log
        .append(
            "Patient-3",
            ExpectedRevision::NoStream,
            vec![NewEvent::new("Foreign", "{}")],
        )
        .await
        .unwrap();
    let err = migrate(&*source, &target.log, &quiet()).await.unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::Verification(_) | MigrateError::Diverged { .. }
        ),
        "{err}"
    );
    target.double.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_name_the_embedded_log_and_kurrentdb() {
    let src_dir = tempfile::tempdir().unwrap();
    let source = filled_source(src_dir.path()).await;
    let expected = all(&*source).await.len() as u64;
    source.close().await.unwrap();
    drop(source);
    let target = target().await;
    let from = format!("sqlite:{}", src_dir.path().display());
    let report = migrate_locations(&from, &target.double.url(), &quiet())
        .await
        .unwrap();
    assert_eq!(report.verified, expected);
    assert!(matches!(
        migrate_locations("postgres://x", &target.double.url(), &quiet()).await,
        Err(MigrateError::InvalidLocation(_))
    ));
    target.double.stop().await;
}
