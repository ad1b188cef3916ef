//! The audit view: the access history (`AccessRecorded` events of the `audit-{day}` streams)
//! indexed by patient and by agent (client id or user), for the FHIR `AuditEvent` search and
//! the patient's access-history page.
//!
//! It lives in its own SQLite file in the projections directory, with its checkpoint in the
//! same transaction as its rows: a restart resumes from the checkpoint instead of replaying
//! years of access history, and memory does not grow with the history. The auditors' bulk
//! tool (`sphere audit`) does not use it: it replays the log directly.
//!
//! An entry's key is its log position: unique, and increasing in the order accesses were
//! recorded, so "newest first, strictly before position P" is a stable paging cursor that
//! new accesses cannot shift.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, params_from_iter, types::Value as SqlValue, Connection};
use sphere_domain::audit::{type_and_subtype, AccessRecord, ACCESS_RECORDED, AUDIT_CATEGORY};
use sphere_domain::envelope::{EventFilter, Position, RecordedEvent};

use crate::{Projection, ProjectionError};

/// One recorded access, its event id (the `AuditEvent.id`) and its position in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: String,
    pub position: Position,
    pub record: AccessRecord,
}

/// What to look for. Every given criterion must hold; lists are "any of".
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub id: Option<String>,
    /// A patient id (`123`).
    pub patient: Option<String>,
    /// A client id or a username.
    pub agent: Option<String>,
    /// Inclusive bounds on `recorded`, Unix ms.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `code` or `system|code` of the type.
    pub types: Vec<String>,
    /// `code` or `system|code` of the subtype.
    pub subtypes: Vec<String>,
}

/// One page of a search, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// Every match, on this page and the others.
    pub total: usize,
    pub entries: Vec<AuditEntry>,
    /// The cursor of the next (older) page, `None` on the last one.
    pub next: Option<Position>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    position        INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    recorded_ms     INTEGER NOT NULL,
    type_system     TEXT NOT NULL,
    type_code       TEXT NOT NULL,
    subtype_system  TEXT NOT NULL,
    subtype_code    TEXT NOT NULL,
    record          BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS entry_keys (
    key             TEXT NOT NULL,
    position        INTEGER NOT NULL,
    PRIMARY KEY (key, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoint (
    id              INTEGER PRIMARY KEY CHECK (id = 0),
    position        INTEGER NOT NULL
);
";

fn patient_key(patient: &str) -> String {
    format!("patient:{patient}")
}

fn agent_key(agent: &str) -> String {
    format!("agent:{agent}")
}

fn storage(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Storage(format!("audit view: {e}"))
}

fn connect(path: &Path, read_only: bool) -> Result<Connection, ProjectionError> {
    let conn =
        crate::sqlite::open(path, read_only, std::time::Duration::from_secs(5)).map_err(storage)?;
    if !read_only {
        // The log is the source of truth: a commit lost in a power cut is replayed from the
        // checkpoint, which is lost with it. WAL keeps rows and checkpoint consistent.
        // The view's pages (mostly the patient and agent keys, spread over the whole index)
        // stay in a cache of their own between commits instead of being read again, and the
        // WAL is folded back every 32 MiB rather than every 4: a key page written in many
        // commits is copied to the database file once per checkpoint.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 8192;",
        )
        .map_err(storage)?;
        conn.execute_batch(SCHEMA).map_err(storage)?;
    }
    Ok(conn)
}

/// The read side: searches and reads see every committed batch.
pub struct AuditView {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Read connections kept for reuse.
const KEEP_READERS: usize = 4;

impl AuditView {
    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ProjectionError>,
    ) -> Result<T, ProjectionError> {
        let conn = match self.idle.lock().map(|mut idle| idle.pop()) {
            Ok(Some(conn)) => conn,
            _ => connect(&self.path, true)?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < KEEP_READERS {
                idle.push(conn);
            }
        }
        out
    }

    /// How many accesses the view holds.
    pub fn len(&self) -> Result<usize, ProjectionError> {
        self.with(|conn| {
            conn.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))
                .map(|n| n as usize)
                .map_err(storage)
        })
    }

    pub fn is_empty(&self) -> Result<bool, ProjectionError> {
        Ok(self.len()? == 0)
    }

    pub fn get(&self, id: &str) -> Result<Option<AuditEntry>, ProjectionError> {
        self.with(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT position, id, record FROM entries WHERE id = ?1")
                .map_err(storage)?;
            let mut rows = statement.query([id]).map_err(storage)?;
            match rows.next().map_err(storage)? {
                Some(row) => Ok(Some(entry(row)?)),
                None => Ok(None),
            }
        })
    }

    /// Matching entries, newest first: up to `limit` of those strictly before `before`
    /// (the `next` cursor of the previous page; `None` for the first page).
    pub fn search(
        &self,
        q: &AuditQuery,
        limit: usize,
        before: Option<Position>,
    ) -> Result<AuditPage, ProjectionError> {
        let (from, mut conditions, mut params) = criteria(q);
        self.with(|conn| {
            let count_sql = format!("SELECT COUNT(*) FROM {from} WHERE {}", conditions.join(" AND "));
            let total = conn
                .prepare_cached(&count_sql)
                .map_err(storage)?
                .query_row(params_from_iter(params.iter()), |r| r.get::<_, i64>(0))
                .map_err(storage)? as usize;
            if let Some(before) = before {
                conditions.push("e.position < ?".into());
                params.push(SqlValue::Integer(before.0 as i64));
            }
            params.push(SqlValue::Integer(limit.saturating_add(1).min(i64::MAX as usize) as i64));
            let sql = format!(
                "SELECT e.position, e.id, e.record FROM {from} WHERE {} ORDER BY e.position DESC LIMIT ?",
                conditions.join(" AND ")
            );
            let mut statement = conn.prepare_cached(&sql).map_err(storage)?;
            let mut rows = statement
                .query(params_from_iter(params.iter()))
                .map_err(storage)?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next().map_err(storage)? {
                entries.push(entry(row)?);
            }
            let next = if entries.len() > limit {
                entries.truncate(limit);
                entries.last().map(|e| e.position)
            } else {
                None
            };
            Ok(AuditPage {
                total,
                entries,
                next,
            })
        })
    }
}

/// The `FROM` clause, the conditions and their parameters of `q`. A patient or an agent
/// drives the query through `entry_keys`, so a search touches that key's entries only.
fn criteria(q: &AuditQuery) -> (&'static str, Vec<String>, Vec<SqlValue>) {
    let mut conditions = vec!["1 = 1".to_owned()];
    let mut params = Vec::new();
    let mut keys: Vec<String> = Vec::new();
    if let Some(p) = &q.patient {
        keys.push(patient_key(p));
    }
    if let Some(a) = &q.agent {
        keys.push(agent_key(a));
    }
    let from = if keys.is_empty() {
        "entries e"
    } else {
        "entry_keys k JOIN entries e ON e.position = k.position"
    };
    for (i, key) in keys.into_iter().enumerate() {
        if i == 0 {
            conditions.push("k.key = ?".into());
        } else {
            conditions.push(
                "EXISTS (SELECT 1 FROM entry_keys x WHERE x.key = ? AND x.position = e.position)"
                    .into(),
            );
        }
        params.push(SqlValue::Text(key));
    }
    if let Some(id) = &q.id {
        conditions.push("e.id = ?".into());
        params.push(SqlValue::Text(id.clone()));
    }
    if let Some(t) = q.from_ms {
        conditions.push("e.recorded_ms >= ?".into());
        params.push(SqlValue::Integer(t));
    }
    if let Some(t) = q.to_ms {
        conditions.push("e.recorded_ms <= ?".into());
        params.push(SqlValue::Integer(t));
    }
    for (wanted, system, code) in [
        (&q.types, "e.type_system", "e.type_code"),
        (&q.subtypes, "e.subtype_system", "e.subtype_code"),
    ] {
        if wanted.is_empty() {
            continue;
        }
        let mut any = Vec::new();
        for w in wanted {
            match w.split_once('|') {
                Some((s, c)) if !s.is_empty() => {
                    any.push(format!("({system} = ? AND {code} = ?)"));
                    params.push(SqlValue::Text(s.to_owned()));
                    params.push(SqlValue::Text(c.to_owned()));
                }
                // `|code` (any system) or a bare code.
                other => {
                    let c = other.map_or(w.as_str(), |(_, c)| c);
                    any.push(format!("{code} = ?"));
                    params.push(SqlValue::Text(c.to_owned()));
                }
            }
        }
        conditions.push(format!("({})", any.join(" OR ")));
    }
    (from, conditions, params)
}

fn entry(row: &rusqlite::Row<'_>) -> Result<AuditEntry, ProjectionError> {
    let position = row.get::<_, i64>(0).map_err(storage)? as u64;
    let id: String = row.get(1).map_err(storage)?;
    let record = serde_json::from_slice(
        row.get_ref(2)
            .map_err(storage)?
            .as_blob()
            .map_err(storage)?,
    )
    .map_err(|e| storage(format!("entry {id} is unreadable: {e}")))?;
    Ok(AuditEntry {
        id,
        position: Position(position),
        record,
    })
}

/// Feeds the [`AuditView`].
pub struct AuditViewProjection {
    conn: Connection,
    /// Applied, not yet committed: `(position, event id, record JSON, record)`.
    pending: Vec<(Position, String, bytes::Bytes, AccessRecord)>,
    checkpoint: Option<Position>,
    view: Arc<AuditView>,
}

impl AuditViewProjection {
    pub const NAME: &'static str = "audit";

    /// Opens (or creates) the view in `dir`, at its stored checkpoint.
    pub fn open(dir: &Path) -> Result<Self, ProjectionError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let path = dir.join("audit.sqlite");
        let conn = connect(&path, false)?;
        let checkpoint = conn
            .query_row("SELECT position FROM checkpoint WHERE id = 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|p| Some(Position(p as u64)))
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(storage(e)),
            })?;
        Ok(Self {
            conn,
            pending: Vec::new(),
            checkpoint,
            view: Arc::new(AuditView {
                path,
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn view(&self) -> Arc<AuditView> {
        self.view.clone()
    }
}

impl Projection for AuditViewProjection {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn checkpoint(&self) -> Option<Position> {
        self.checkpoint
    }

    /// Every read appends an access record: committing the view for each of them would cost
    /// a SQLite commit per group commit of the log. AuditEvent searches wait for the head,
    /// which commits at once.
    fn commit_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(500)
    }

    fn filter(&self) -> EventFilter {
        EventFilter {
            categories: vec![AUDIT_CATEGORY.into()],
            event_types: vec![ACCESS_RECORDED.into()],
            ..EventFilter::default()
        }
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let record: AccessRecord = event.json().map_err(|e| ProjectionError::BadEvent {
            position: event.position,
            message: e.to_string(),
        })?;
        self.pending.push((
            event.position,
            event.event_id.simple().to_string(),
            event.data.clone(),
            record,
        ));
        Ok(())
    }

    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        let tx = self.conn.transaction().map_err(storage)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO entries (position, id, recorded_ms, type_system, type_code, subtype_system, subtype_code, record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(storage)?;
            let mut key = tx
                .prepare_cached("INSERT OR IGNORE INTO entry_keys (key, position) VALUES (?1, ?2)")
                .map_err(storage)?;
            // Keys in index order: each commit walks the key index once, front to back.
            let mut keys: Vec<(String, i64)> = Vec::with_capacity(self.pending.len() * 3);
            for (at, id, data, record) in &self.pending {
                let at = at.0 as i64;
                let ((ts, tc), (ss, sc)) = type_and_subtype(record);
                insert
                    .execute(params![
                        at,
                        id,
                        record.recorded_ms,
                        ts,
                        tc,
                        ss,
                        sc,
                        &data[..]
                    ])
                    .map_err(storage)?;
                keys.extend(record.patients.iter().map(|p| (patient_key(p), at)));
                keys.extend(
                    [&record.client_id, &record.user]
                        .into_iter()
                        .flatten()
                        .map(|a| (agent_key(a), at)),
                );
            }
            keys.sort_unstable();
            for (k, at) in &keys {
                key.execute(params![k, at]).map_err(storage)?;
            }
            tx.prepare_cached(
                "INSERT INTO checkpoint (id, position) VALUES (0, ?1)
                 ON CONFLICT (id) DO UPDATE SET position = excluded.position",
            )
            .and_then(|mut s| s.execute([position.0 as i64]))
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)?;
        self.pending.clear();
        self.checkpoint = Some(position);
        Ok(())
    }

    fn reset(&mut self) -> Result<(), ProjectionError> {
        self.conn
            .execute_batch("DELETE FROM entries; DELETE FROM entry_keys; DELETE FROM checkpoint;")
            .map_err(storage)?;
        self.pending.clear();
        self.checkpoint = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sphere_domain::envelope::EventMetadata;

    fn event(position: u64, record: &AccessRecord) -> RecordedEvent {
        RecordedEvent {
            position: Position(position),
            stream: sphere_domain::audit::stream_for(record.recorded_ms),
            revision: position - 1,
            event_id: uuid::Uuid::from_u128(u128::from(position)),
            event_type: ACCESS_RECORDED.into(),
            data: serde_json::to_vec(record).unwrap().into(),
            metadata: EventMetadata::default(),
        }
    }

    fn access(ms: i64, interaction: &str, client: &str, patient: Option<&str>) -> AccessRecord {
        AccessRecord {
            recorded_ms: ms,
            interaction: interaction.into(),
            client_id: Some(client.into()),
            patients: patient.map(|p| vec![p.to_owned()]).unwrap_or_default(),
            method: "GET".into(),
            path: "/fhir/r4/x".into(),
            status: 200,
            ..Default::default()
        }
    }

    #[test]
    fn finds_accesses_by_patient_agent_date_and_subtype_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = AuditViewProjection::open(dir.path()).unwrap();
        let records = [
            access(1000, "read", "app-a", Some("p1")),
            access(2000, "search-type", "app-b", Some("p1")),
            access(3000, "read", "app-b", Some("p2")),
            access(4000, "login", "app-a", None),
        ];
        for (i, r) in records.iter().enumerate() {
            let e = event(i as u64 + 1, r);
            assert!(p.filter().matches(&e.stream, &e.event_type));
            p.apply(&e).unwrap();
        }
        p.commit(Position(4)).unwrap();
        let view = p.view();
        let ms = |q: &AuditQuery| -> Vec<i64> {
            view.search(q, 10, None)
                .unwrap()
                .entries
                .iter()
                .map(|e| e.record.recorded_ms)
                .collect()
        };
        let by_patient = AuditQuery {
            patient: Some("p1".into()),
            ..Default::default()
        };
        assert_eq!(ms(&by_patient), vec![2000, 1000]);
        let by_agent = AuditQuery {
            agent: Some("app-b".into()),
            subtypes: vec!["read".into()],
            ..Default::default()
        };
        assert_eq!(ms(&by_agent), vec![3000]);
        let by_both = AuditQuery {
            patient: Some("p1".into()),
            agent: Some("app-b".into()),
            ..Default::default()
        };
        assert_eq!(ms(&by_both), vec![2000]);
        let by_date = AuditQuery {
            from_ms: Some(2000),
            to_ms: Some(3000),
            ..Default::default()
        };
        assert_eq!(ms(&by_date), vec![3000, 2000]);
        let by_type = AuditQuery {
            types: vec!["http://dicom.nema.org/resources/ontology/DCM|110114".into()],
            ..Default::default()
        };
        assert_eq!(ms(&by_type), vec![4000]);
        let page = view.search(&AuditQuery::default(), 1, None).unwrap();
        assert_eq!((page.total, page.entries.len()), (4, 1));
        assert!(view.get(&page.entries[0].id).unwrap().is_some());
    }

    #[test]
    fn pages_follow_a_stable_cursor_while_accesses_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = AuditViewProjection::open(dir.path()).unwrap();
        for i in 1..=5 {
            p.apply(&event(i, &access(i as i64, "read", "app-a", Some("p1"))))
                .unwrap();
        }
        p.commit(Position(5)).unwrap();
        let view = p.view();
        let q = AuditQuery {
            patient: Some("p1".into()),
            ..Default::default()
        };
        let first = view.search(&q, 2, None).unwrap();
        let ms = |page: &AuditPage| -> Vec<i64> {
            page.entries.iter().map(|e| e.record.recorded_ms).collect()
        };
        assert_eq!((ms(&first), first.total), (vec![5, 4], 5));
        // A newer access does not shift the pages that follow.
        p.apply(&event(6, &access(6, "read", "app-a", Some("p1"))))
            .unwrap();
        p.commit(Position(6)).unwrap();
        let second = view.search(&q, 2, first.next).unwrap();
        assert_eq!(ms(&second), vec![3, 2]);
        let last = view.search(&q, 2, second.next).unwrap();
        assert_eq!((ms(&last), last.next), (vec![1], None));
    }

    #[test]
    fn a_reopened_view_keeps_its_entries_and_resumes_from_its_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = AuditViewProjection::open(dir.path()).unwrap();
        assert_eq!(p.checkpoint(), None);
        p.apply(&event(3, &access(1000, "read", "app-a", Some("p1"))))
            .unwrap();
        p.commit(Position(7)).unwrap();
        // Applied but never committed: gone after a restart, replayed from the checkpoint.
        p.apply(&event(8, &access(2000, "read", "app-a", Some("p1"))))
            .unwrap();
        drop(p);
        let p = AuditViewProjection::open(dir.path()).unwrap();
        assert_eq!(p.checkpoint(), Some(Position(7)));
        assert_eq!(p.view().len().unwrap(), 1);
        let mut p = p;
        p.reset().unwrap();
        assert_eq!((p.checkpoint(), p.view().len().unwrap()), (None, 0));
    }
}
