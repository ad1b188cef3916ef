//! Access history: every answered request that touches data or credentials becomes one
//! `AccessRecorded` event in the log (stream `audit-{yyyy-mm-dd}`), durable before the client
//! sees the response.
//!
//! How a request is recorded:
//! - the connection loop ([`crate::http::server`]) runs each request inside a [`scope`]: a
//!   task-local [`Note`] the handlers fill in with one-line hooks ([`note`]) - the access
//!   context's actor, the interaction, the ids returned, the patients concerned;
//! - when the routes have produced the response, the note and the status become an
//!   [`AccessRecord`]; requests no handler named are recorded only when refused (401, 403,
//!   429), so health checks and discovery documents do not flood the trail;
//! - the record goes to the [`Auditor`], whose single task appends everything waiting in one
//!   commit, and the response is sent only once that commit is acknowledged. Concurrent
//!   requests share commits, so the cost per request is a channel send and a wakeup, not an
//!   fsync. If the commit fails, the response is replaced by a 503: an access that could not be
//!   recorded is never answered.

pub mod page;
pub mod replay;

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use sphere_domain::audit::{stream_for, AccessRecord, ACCESS_RECORDED};
use sphere_domain::envelope::{Actor, EventMetadata, NewEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};

use crate::eventlog::{EventLog, ExpectedRevision, StreamWrite};

/// What the handlers of one request say about it. Empty unless a handler fills it in.
#[derive(Debug, Default, Clone)]
pub struct Note {
    pub interaction: Option<String>,
    pub operation: Option<String>,
    pub types: Vec<String>,
    pub ids: Vec<String>,
    pub query: Option<String>,
    pub patients: Vec<String>,
    pub actor: Actor,
    pub detail: Option<String>,
}

impl Note {
    pub fn interaction(&mut self, interaction: &str) -> &mut Self {
        self.interaction = Some(interaction.to_owned());
        self
    }

    pub fn resource_type(&mut self, t: &str) -> &mut Self {
        if !self.types.iter().any(|x| x == t) {
            self.types.push(t.to_owned());
        }
        self
    }

    pub fn patient(&mut self, id: &str) -> &mut Self {
        if !id.is_empty() && !self.patients.iter().any(|p| p == id) {
            self.patients.push(id.to_owned());
        }
        self
    }

    pub fn actor(&mut self, actor: &Actor) -> &mut Self {
        self.actor = actor.clone();
        self
    }

    /// The record of this request, `None` when it is not worth recording (nothing named it
    /// and it was not refused).
    pub fn into_record(
        self,
        method: &str,
        path: &str,
        source_ip: Option<String>,
        status: u16,
        recorded_ms: i64,
    ) -> Option<AccessRecord> {
        let refused = matches!(status, 401 | 403 | 429);
        let interaction = match self.interaction {
            Some(i) => i,
            None if refused => "denied".to_owned(),
            None => return None,
        };
        Some(AccessRecord {
            recorded_ms,
            interaction,
            operation: self.operation,
            types: self.types,
            ids: self.ids,
            query: self.query.map(|q| redact_query(&q, path)),
            patients: self.patients,
            client_id: self.actor.client_id,
            user: self.actor.user,
            token_id: self.actor.token_id,
            source_ip,
            method: method.to_owned(),
            path: path.chars().take(512).collect(),
            status,
            detail: self.detail.or_else(|| {
                refused.then(|| {
                    match status {
                        401 => "unauthenticated",
                        403 => "forbidden",
                        _ => "too_many_requests",
                    }
                    .to_owned()
                })
            }),
        })
    }
}

/// Query parameters that could carry a credential are dropped before anything is kept. `code`
/// is an authorization code only on the authorization server's paths; elsewhere it is FHIR's
/// `code` search parameter and is kept.
fn redact_query(query: &str, path: &str) -> String {
    const SECRET: [&str; 6] = [
        "access_token",
        "refresh_token",
        "token",
        "code",
        "client_secret",
        "password",
    ];
    if !SECRET.iter().any(|s| query.contains(s)) {
        return query.to_owned();
    }
    query
        .split('&')
        .filter(|pair| {
            let key = pair.split('=').next().unwrap_or("");
            !SECRET.contains(&key) || (key == "code" && !path.starts_with("/auth"))
        })
        .collect::<Vec<_>>()
        .join("&")
}

tokio::task_local! {
    static NOTE: RefCell<Note>;
}

/// Runs `request` with an empty note, returning its output and what the handlers noted.
pub async fn scope<F: Future>(request: F) -> (F::Output, Note) {
    NOTE.scope(RefCell::new(Note::default()), async move {
        let output = request.await;
        let note = NOTE.with(|n| std::mem::take(&mut *n.borrow_mut()));
        (output, note)
    })
    .await
}

/// Whether the current request is being recorded (it runs inside a [`scope`]).
pub fn recording() -> bool {
    NOTE.try_with(|_| ()).is_ok()
}

/// Adds to the current request's note. Outside a [`scope`] (in-process tests, the CLI) it does
/// nothing.
pub fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| f(&mut n.borrow_mut()));
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the access could not be recorded: {0}")]
    Append(String),
    #[error("the audit recorder has stopped")]
    Stopped,
}

struct Pending {
    event: NewEvent,
    stream: String,
    done: oneshot::Sender<Result<(), String>>,
}

/// Appends access records in batches: one task drains the queue and commits everything
/// waiting as one append per day stream (one transaction on the embedded log).
pub struct Auditor {
    queue: mpsc::Sender<Pending>,
}

/// Most records committed together.
const MAX_BATCH: usize = 2048;

impl Auditor {
    /// Starts the recorder; commits start at least `pace` apart (records arriving meanwhile
    /// join the next one).
    pub fn start(log: Arc<dyn EventLog>, pace: Duration) -> Arc<Self> {
        let (queue, mut rx) = mpsc::channel::<Pending>(16 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut last = Instant::now();
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let due = last + pace;
                if Instant::now() < due && batch.len() < MAX_BATCH {
                    tokio::time::sleep_until(due).await;
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                }
                last = Instant::now();
                commit(log.as_ref(), std::mem::take(&mut batch)).await;
            }
        });
        Arc::new(Self { queue })
    }

    /// Records `record` and returns once it is durable in the log.
    pub async fn record(&self, record: &AccessRecord) -> Result<(), AuditError> {
        let event = NewEvent::json(ACCESS_RECORDED, record)
            .map_err(|e| AuditError::Append(e.to_string()))?
            .with_metadata(EventMetadata {
                actor: Some(Actor {
                    client_id: record.client_id.clone(),
                    user: record.user.clone(),
                    token_id: record.token_id.clone(),
                }),
                ..Default::default()
            });
        let (done, acknowledged) = oneshot::channel();
        self.queue
            .send(Pending {
                event,
                stream: stream_for(record.recorded_ms),
                done,
            })
            .await
            .map_err(|_| AuditError::Stopped)?;
        acknowledged
            .await
            .map_err(|_| AuditError::Stopped)?
            .map_err(AuditError::Append)
    }
}

async fn commit(log: &dyn EventLog, batch: Vec<Pending>) {
    let mut writes: Vec<StreamWrite> = Vec::new();
    let mut waiting = Vec::with_capacity(batch.len());
    for p in batch {
        match writes.iter_mut().find(|w| w.stream == p.stream) {
            Some(w) => w.events.push(p.event),
            None => writes.push(StreamWrite {
                stream: p.stream,
                expected: ExpectedRevision::Any,
                events: vec![p.event],
            }),
        }
        waiting.push(p.done);
    }
    // One stream except around midnight; a plain append needs no multi-stream support.
    let result = if writes.len() == 1 {
        let w = writes.remove(0);
        log.append(&w.stream, w.expected, w.events)
            .await
            .map(|_| ())
    } else {
        log.append_multi(writes).await.map(|_| ())
    };
    let result = result.map_err(|e| {
        tracing::error!(error = %e, "recording accesses failed");
        e.to_string()
    });
    for done in waiting {
        let _ = done.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_named_or_refused_requests_are_recorded() {
        assert!(Note::default()
            .into_record("GET", "/health", None, 200, 1)
            .is_none());
        let denied = Note::default()
            .into_record("GET", "/fhir/r4/Patient", Some("::1".into()), 401, 1)
            .unwrap();
        assert_eq!(denied.interaction, "denied");
        assert_eq!(denied.source_ip.as_deref(), Some("::1"));
        let mut n = Note::default();
        n.interaction("read").resource_type("Patient").patient("p1");
        let r = n
            .into_record("GET", "/fhir/r4/Patient/p1", None, 200, 1)
            .unwrap();
        assert_eq!((r.interaction.as_str(), r.patients.len()), ("read", 1));
    }

    #[test]
    fn credentials_never_reach_the_record() {
        assert_eq!(
            redact_query("name=x&_count=2", "/fhir/r4/Patient"),
            "name=x&_count=2"
        );
        assert_eq!(
            redact_query("access_token=abc&name=x&code=1", "/auth/authorize"),
            "name=x"
        );
        assert_eq!(
            redact_query("access_token=abc&code=1234-5", "/fhir/r4/Observation"),
            "code=1234-5",
            "FHIR's code search parameter is kept"
        );
    }

    #[tokio::test]
    async fn notes_stay_with_their_request() {
        let (_, a) = scope(async {
            note(|n| {
                n.interaction("read");
            })
        })
        .await;
        let (inside, b) = scope(async { recording() }).await;
        assert!(inside && !recording());
        assert_eq!(a.interaction.as_deref(), Some("read"));
        assert!(b.interaction.is_none());
        note(|n| {
            n.interaction("ignored outside a scope");
        });
    }

    #[tokio::test]
    async fn concurrent_records_are_durable_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(crate::eventlog::sqlite::SqliteLog::open(dir.path()).unwrap());
        let auditor = Auditor::start(log.clone(), Duration::from_millis(2));
        let mut tasks = Vec::new();
        for i in 0..200 {
            let auditor = auditor.clone();
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let r = AccessRecord {
                    recorded_ms: 1_767_225_600_000 + i,
                    interaction: "read".into(),
                    method: "GET".into(),
                    path: format!("/fhir/r4/Patient/{i}"),
                    status: 200,
                    ..Default::default()
                };
                auditor.record(&r).await.unwrap();
                // Acknowledged means readable by anyone.
                let events = log.read_category("audit", None, 10_000).await.unwrap();
                assert!(events
                    .iter()
                    .any(|e| e.json::<AccessRecord>().unwrap().path == r.path));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let events = log.read_category("audit", None, 10_000).await.unwrap();
        assert_eq!(events.len(), 200);
        assert!(events.iter().all(|e| e.stream == "audit-2026-01-01"));
    }
}
