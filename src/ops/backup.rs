//! Backup and restore of the embedded store.
//!
//! A backup is a folder: `events.sqlite3` (a consistent snapshot taken with `VACUUM INTO`,
//! which reads inside one transaction, so it is safe while the server appends), the signing
//! keys and TLS material (without them, tokens issued before the backup would no longer
//! verify), and `backup.json` describing it. Projections are not copied: they are rebuilt
//! from the log when the restored server starts, which is also the proof that the log alone
//! is the state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eventlog::sqlite::schema;

/// Folders of the data directory copied with the log (secrets: keep backups private).
const COPIED_DIRS: &[&str] = &["keys", "tls"];
const MANIFEST: &str = "backup.json";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("SQLite: {0}")]
    Sqlite(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub sphere_version: String,
    pub created_ms: i64,
    /// Position of the newest event in the snapshot (0: empty log).
    pub head: u64,
    pub events: u64,
}

/// Takes a consistent backup of `data_dir` into `target` (which must not exist or be empty).
pub fn backup(data_dir: &Path, target: &Path) -> Result<BackupManifest, BackupError> {
    let source = schema::database_path(data_dir);
    if !source.is_file() {
        return Err(BackupError::Refused(format!(
            "{} holds no event log to back up",
            data_dir.display()
        )));
    }
    ensure_empty(target)?;
    std::fs::create_dir_all(target).map_err(|e| io(target, e))?;
    let snapshot = schema::database_path(target);
    // Read-write only so that SQLite may create the snapshot file; the source is only read.
    let conn = schema::connect(&source, false).map_err(|e| BackupError::Sqlite(e.to_string()))?;
    conn.execute("VACUUM INTO ?1", [snapshot.to_string_lossy().into_owned()])
        .map_err(|e| BackupError::Sqlite(e.to_string()))?;
    drop(conn);
    for dir in COPIED_DIRS {
        copy_dir(&data_dir.join(dir), &target.join(dir))?;
    }
    let manifest = describe(&snapshot)?;
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| io(target, e))?;
    std::fs::write(target.join(MANIFEST), bytes).map_err(|e| io(target, e))?;
    Ok(manifest)
}

/// Restores `backup_dir` into `data_dir`. Refuses to overwrite an existing event log unless
/// `force`; projections in `data_dir` are removed so they rebuild from the restored log.
pub fn restore(
    backup_dir: &Path,
    data_dir: &Path,
    force: bool,
) -> Result<BackupManifest, BackupError> {
    let manifest_path = backup_dir.join(MANIFEST);
    let manifest: BackupManifest = std::fs::read(&manifest_path)
        .map_err(|e| io(&manifest_path, e))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| io(&manifest_path, e)))?;
    let snapshot = schema::database_path(backup_dir);
    // Check the snapshot before touching anything of the target.
    let found = describe(&snapshot)?;
    if found.head != manifest.head || found.events != manifest.events {
        return Err(BackupError::Refused(format!(
            "{} does not match its backup.json (head {} vs {}, events {} vs {})",
            snapshot.display(),
            found.head,
            manifest.head,
            found.events,
            manifest.events
        )));
    }
    let target_db = schema::database_path(data_dir);
    if target_db.exists() && !force {
        return Err(BackupError::Refused(format!(
            "{} already holds an event log; stop the server and pass --force to replace it",
            data_dir.display()
        )));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| io(data_dir, e))?;
    for leftover in ["-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{leftover}", target_db.display()));
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
        }
    }
    // Copy to a temporary name, then rename: a crash mid-restore never leaves half a log.
    let partial = data_dir.join("events.sqlite3.restoring");
    std::fs::copy(&snapshot, &partial).map_err(|e| io(&partial, e))?;
    std::fs::rename(&partial, &target_db).map_err(|e| io(&target_db, e))?;
    for dir in COPIED_DIRS {
        let to = data_dir.join(dir);
        if to.exists() {
            std::fs::remove_dir_all(&to).map_err(|e| io(&to, e))?;
        }
        copy_dir(&backup_dir.join(dir), &to)?;
    }
    let projections = crate::projection::projections_dir(data_dir);
    if projections.exists() {
        std::fs::remove_dir_all(&projections).map_err(|e| io(&projections, e))?;
    }
    Ok(manifest)
}

fn describe(database: &Path) -> Result<BackupManifest, BackupError> {
    // A plain read-only connection: the snapshot is not in WAL mode and must not be changed.
    let conn =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| BackupError::Sqlite(format!("{}: {e}", database.display())))?;
    let (head, events): (i64, i64) = conn
        .query_row(
            "SELECT COALESCE(MAX(global_position), 0), COUNT(*) FROM events",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| BackupError::Sqlite(format!("{}: {e}", database.display())))?;
    Ok(BackupManifest {
        sphere_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_ms: crate::eventlog::sqlite::now_ms(),
        head: head as u64,
        events: events as u64,
    })
}

fn ensure_empty(target: &Path) -> Result<(), BackupError> {
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Refused(format!(
                    "{} is not empty; back up into a new folder",
                    target.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(target, e)),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), BackupError> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        let path = entry.path();
        let dest = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &dest)?;
        } else {
            std::fs::copy(&path, &dest).map_err(|e| io(&path, e))?;
        }
    }
    Ok(())
}
