//! Read connections and row decoding. Readers never block the writer (WAL).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{types::Value as SqlValue, Connection, Row};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::schema;
use crate::eventlog::{
    Direction, EventFilter, EventLogError, EventMetadata, Position, RecordedEvent, StreamStart,
};

/// A pool of at most `size` read-only connections, opened on demand and kept open.
///
/// Readers take a permit before they leave the async runtime, so no more than `size` reads
/// run at once and the pool never has to open a connection it will not keep: opening one
/// (file, pragmas, schema, an empty statement cache) costs more than the point reads it serves,
/// and 64 concurrent requests used to open and close connections all the time. Waiting for a
/// permit is also what keeps 64 blocking threads from competing for 2 cores.
pub struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    size: usize,
}

impl ReaderPool {
    pub fn new(path: PathBuf, size: usize) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// A turn to read; hold it while [`ReaderPool::with`] runs.
    pub async fn permit(&self) -> Result<OwnedSemaphorePermit, EventLogError> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| EventLogError::Closed)
    }

    /// Runs `f` on a pooled connection. Blocking: call from `spawn_blocking`, holding a
    /// [`ReaderPool::permit`].
    pub fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, EventLogError>,
    ) -> Result<T, EventLogError> {
        let conn = match self.idle.lock().map(|mut idle| idle.pop()) {
            Ok(Some(conn)) => conn,
            _ => schema::connect(&self.path, true)?,
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.size {
                idle.push(conn);
            }
        }
        out
    }
}

const COLUMNS: &str = "global_position, stream, revision, event_id, event_type, data, metadata";
const HEAD_COLUMNS: &str = "global_position, stream, revision, event_id, event_type, created_ms";

fn decode(row: &Row<'_>) -> rusqlite::Result<Result<RecordedEvent, EventLogError>> {
    let position = row.get::<_, i64>(0)? as u64;
    let stream: String = row.get(1)?;
    let revision = row.get::<_, i64>(2)? as u64;
    let id = row.get_ref(3)?.as_blob()?;
    let event_type: String = row.get(4)?;
    let data = Bytes::copy_from_slice(row.get_ref(5)?.as_blob()?);
    let metadata = row.get_ref(6)?.as_blob()?;
    let event_id = match Uuid::from_slice(id) {
        Ok(id) => id,
        Err(_) => {
            return Ok(Err(EventLogError::Corrupt(format!(
                "event at position {position} has a malformed id"
            ))))
        }
    };
    let metadata: EventMetadata = match serde_json::from_slice(metadata) {
        Ok(m) => m,
        Err(e) => {
            return Ok(Err(EventLogError::Corrupt(format!(
                "event at position {position} has unreadable metadata: {e}"
            ))))
        }
    };
    Ok(Ok(RecordedEvent {
        position: Position(position),
        stream,
        revision,
        event_id,
        event_type,
        data,
        metadata,
    }))
}

fn query_events(
    conn: &Connection,
    sql: &str,
    params: &[SqlValue],
    capacity: usize,
) -> Result<Vec<RecordedEvent>, EventLogError> {
    let mut statement = conn.prepare_cached(sql).map_err(read_error)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(read_error)?;
    let mut out = Vec::with_capacity(capacity.min(4096));
    while let Some(row) = rows.next().map_err(read_error)? {
        out.push(decode(row).map_err(read_error)??);
    }
    Ok(out)
}

pub fn read_error(e: rusqlite::Error) -> EventLogError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt) | Some(rusqlite::ErrorCode::NotADatabase) => {
            EventLogError::Corrupt(e.to_string())
        }
        _ => EventLogError::Unavailable(e.to_string()),
    }
}

pub fn read_stream(
    conn: &Connection,
    stream: &str,
    direction: Direction,
    start: StreamStart,
    max: usize,
) -> Result<Vec<RecordedEvent>, EventLogError> {
    let limit = max.min(i64::MAX as usize) as i64;
    let (sql, from) = match (direction, start) {
        (Direction::Forwards, StreamStart::Origin) => (
            format!("SELECT {COLUMNS} FROM events WHERE stream = ?1 AND revision >= ?2 ORDER BY revision ASC LIMIT ?3"),
            0i64,
        ),
        (Direction::Forwards, StreamStart::Revision(r)) => (
            format!("SELECT {COLUMNS} FROM events WHERE stream = ?1 AND revision >= ?2 ORDER BY revision ASC LIMIT ?3"),
            r.min(i64::MAX as u64) as i64,
        ),
        (Direction::Backwards, StreamStart::Origin) => (
            format!("SELECT {COLUMNS} FROM events WHERE stream = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT ?3"),
            i64::MAX,
        ),
        (Direction::Backwards, StreamStart::Revision(r)) => (
            format!("SELECT {COLUMNS} FROM events WHERE stream = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT ?3"),
            r.min(i64::MAX as u64) as i64,
        ),
    };
    query_events(
        conn,
        &sql,
        &[
            SqlValue::Text(stream.to_owned()),
            SqlValue::Integer(from),
            SqlValue::Integer(limit),
        ],
        max,
    )
}

/// Events of `$all` in `(after, upto]` matching `filter`, at most `max`.
pub fn read_range(
    conn: &Connection,
    after: Option<Position>,
    upto: Option<Position>,
    filter: &EventFilter,
    max: usize,
) -> Result<Vec<RecordedEvent>, EventLogError> {
    let (sql, params) = range_query(COLUMNS, after, upto, filter, max);
    query_events(conn, &sql, &params, max)
}

/// As [`read_range`] without `upto`, leaving out each event's data and metadata but its
/// commit time: SQLite then reads no data pages for the rows' bodies.
pub fn read_range_heads(
    conn: &Connection,
    after: Option<Position>,
    filter: &EventFilter,
    max: usize,
) -> Result<Vec<RecordedEvent>, EventLogError> {
    let (sql, params) = range_query(HEAD_COLUMNS, after, None, filter, max);
    let mut statement = conn.prepare_cached(&sql).map_err(read_error)?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(params.iter()))
        .map_err(read_error)?;
    let mut out = Vec::with_capacity(max.min(4096));
    while let Some(row) = rows.next().map_err(read_error)? {
        let position = row.get::<_, i64>(0).map_err(read_error)? as u64;
        let event_id = Uuid::from_slice(
            row.get_ref(3)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(read_error)?,
        )
        .map_err(|_| {
            EventLogError::Corrupt(format!("event at position {position} has a malformed id"))
        })?;
        out.push(RecordedEvent {
            position: Position(position),
            stream: row.get(1).map_err(read_error)?,
            revision: row.get::<_, i64>(2).map_err(read_error)? as u64,
            event_id,
            event_type: row.get(4).map_err(read_error)?,
            data: Bytes::new(),
            metadata: EventMetadata {
                commit_ms: row.get(5).map_err(read_error)?,
                ..EventMetadata::default()
            },
        });
    }
    Ok(out)
}

fn range_query(
    columns: &str,
    after: Option<Position>,
    upto: Option<Position>,
    filter: &EventFilter,
    max: usize,
) -> (String, Vec<SqlValue>) {
    let mut sql = format!("SELECT {columns} FROM events WHERE global_position > ?");
    let mut params = vec![SqlValue::Integer(after.map(|p| p.0 as i64).unwrap_or(0))];
    if let Some(upto) = upto {
        sql.push_str(" AND global_position <= ?");
        params.push(SqlValue::Integer(upto.0 as i64));
    }
    push_filter(&mut sql, &mut params, filter);
    sql.push_str(" ORDER BY global_position ASC LIMIT ?");
    params.push(SqlValue::Integer(max.min(i64::MAX as usize) as i64));
    (sql, params)
}

/// Up to `max` events before `before` (exclusive; `None`: the newest), newest first.
pub fn read_range_backwards(
    conn: &Connection,
    before: Option<Position>,
    filter: &EventFilter,
    max: usize,
) -> Result<Vec<RecordedEvent>, EventLogError> {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE global_position < ?");
    let mut params = vec![SqlValue::Integer(
        before
            .map(|p| p.0.min(i64::MAX as u64) as i64)
            .unwrap_or(i64::MAX),
    )];
    push_filter(&mut sql, &mut params, filter);
    sql.push_str(" ORDER BY global_position DESC LIMIT ?");
    params.push(SqlValue::Integer(max.min(i64::MAX as usize) as i64));
    query_events(conn, &sql, &params, max)
}

/// The `AND ...` conditions of `filter`.
fn push_filter(sql: &mut String, params: &mut Vec<SqlValue>, filter: &EventFilter) {
    push_in(sql, params, "category IN", &filter.categories);
    push_in(sql, params, "event_type IN", &filter.event_types);
    push_in(sql, params, "category NOT IN", &filter.excluded_categories);
}

/// Adds ` AND {test} (?, ...)` for `values`, e.g. `test` = `category NOT IN`.
fn push_in(sql: &mut String, params: &mut Vec<SqlValue>, test: &str, values: &[String]) {
    if values.is_empty() {
        return;
    }
    sql.push_str(" AND ");
    sql.push_str(test);
    sql.push_str(" (");
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push('?');
        params.push(SqlValue::Text(value.clone()));
    }
    sql.push(')');
}

pub fn head(conn: &Connection) -> Result<Option<Position>, EventLogError> {
    let mut statement = conn
        .prepare_cached("SELECT MAX(global_position) FROM events")
        .map_err(read_error)?;
    statement
        .query_row([], |r| r.get::<_, Option<i64>>(0))
        .map(|p| p.map(|p| Position(p as u64)))
        .map_err(read_error)
}

/// [`stream_revision`] of each stream, read in one transaction (one snapshot, one lock).
pub fn stream_revisions(
    conn: &Connection,
    streams: &[String],
) -> Result<Vec<Option<u64>>, EventLogError> {
    let tx = conn.unchecked_transaction().map_err(read_error)?;
    let revisions = streams
        .iter()
        .map(|stream| stream_revision(&tx, stream))
        .collect::<Result<Vec<_>, _>>()?;
    tx.finish().map_err(read_error)?;
    Ok(revisions)
}

pub fn stream_revision(conn: &Connection, stream: &str) -> Result<Option<u64>, EventLogError> {
    conn.prepare_cached("SELECT MAX(revision) FROM events WHERE stream = ?1")
        .map_err(read_error)?
        .query_row([stream], |r| r.get::<_, Option<i64>>(0))
        .map(|r| r.map(|r| r as u64))
        .map_err(read_error)
}
