//! Opening SQLite files the way every store of Sphere does (the event log and the audit view).

use std::path::Path;
use std::time::Duration;

use rusqlite::{config::DbConfig, Connection, OpenFlags};

/// Opens `path` (created if missing, unless `read_only`) for use from one thread at a time,
/// waiting up to `busy` for another process's lock.
///
/// The query planner stability guarantee is on: without it, the bundled SQLite (3.50, STAT4)
/// compiles a cached statement again at every new binding of a value that "might influence
/// the plan" - a bound `LIMIT ?` on every read, `WHERE stream = ?1` on every write (a sixth of
/// a read's and 7% of an import's CPU in profiles). Sphere's queries have one right plan
/// whatever the values, so the guarantee costs nothing.
pub fn open(path: &Path, read_only: bool, busy: Duration) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy)?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(conn)
}
