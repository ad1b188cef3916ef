//! The embedded log's tables and connection settings.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::eventlog::EventLogError;

/// Bumped when the table layout changes; a store written by a newer Sphere is refused rather
/// than misread.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    global_position INTEGER PRIMARY KEY,
    event_id        BLOB    NOT NULL UNIQUE,
    stream          TEXT    NOT NULL,
    revision        INTEGER NOT NULL,
    category        TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    data            BLOB    NOT NULL,
    metadata        BLOB    NOT NULL,
    created_ms      INTEGER NOT NULL,
    UNIQUE (stream, revision)
);
CREATE INDEX IF NOT EXISTS events_by_category ON events (category, global_position);
CREATE TABLE IF NOT EXISTS checkpoints (
    name     TEXT    PRIMARY KEY,
    position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sphere_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// The file the log lives in, inside the data directory.
pub fn database_path(dir: &Path) -> std::path::PathBuf {
    dir.join("events.sqlite3")
}

/// Opens a connection with the settings every connection needs. The page cache is kept
/// small on purpose: SQLite walks the whole cache hash at each write commit (seen as the top
/// writer hot spot with a 64 MiB cache), and readers get their pages from the OS page cache
/// through mmap anyway. `busy_timeout` lets a second
/// process (a CLI import while the server runs) wait for the write lock instead of failing.
pub fn connect(path: &Path, read_only: bool) -> Result<Connection, EventLogError> {
    let conn = sphere_projections::sqlite::open(path, read_only, Duration::from_secs(30))
        .map_err(|e| open_error(path, e))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -8192;
         PRAGMA mmap_size = 268435456;",
    )
    .map_err(|e| open_error(path, e))?;
    Ok(conn)
}

/// Creates the tables if needed and checks the store is one this version can read.
pub fn initialize(conn: &Connection, path: &Path) -> Result<(), EventLogError> {
    conn.execute_batch(SCHEMA)
        .map_err(|e| open_error(path, e))?;
    let version: Option<String> = conn
        .query_row(
            "SELECT value FROM sphere_meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })
        .map_err(|e| open_error(path, e))?;
    match version {
        None => {
            conn.execute(
                "INSERT INTO sphere_meta (key, value) VALUES ('schema_version', ?1)",
                [SCHEMA_VERSION.to_string()],
            )
            .map_err(|e| open_error(path, e))?;
        }
        Some(v) if v == SCHEMA_VERSION.to_string() => {}
        Some(v) => {
            return Err(EventLogError::Corrupt(format!(
                "{} has event-log schema version {v}; this Sphere reads version {SCHEMA_VERSION}",
                path.display()
            )))
        }
    }
    Ok(())
}

/// Turns SQLite's open-time failures into one clear line naming the file.
pub fn open_error(path: &Path, e: rusqlite::Error) -> EventLogError {
    let shown = path.display();
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) | Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            EventLogError::Corrupt(format!(
                "{shown} is not a readable Sphere event log ({e}); restore it from a backup"
            ))
        }
        Some(rusqlite::ErrorCode::CannotOpen) | Some(rusqlite::ErrorCode::PermissionDenied) => {
            EventLogError::Unavailable(format!(
                "cannot open {shown}: {e} (check that the data directory exists and is writable)"
            ))
        }
        Some(rusqlite::ErrorCode::ReadOnly) => {
            EventLogError::Unavailable(format!("{shown} is read-only: {e}"))
        }
        _ => EventLogError::Unavailable(format!("{shown}: {e}")),
    }
}
