//! The embedded SQLite event log.
