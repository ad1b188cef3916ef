//! The conformance suite every [`EventLog`] implementation must pass.
//!
//! Written against the trait only, and safe to run against a shared, non-empty store (a real
//! KurrentDB): every case uses stream names unique to the run and measures `$all` relative to
//! the head it saw when it started.

use std::sync::Arc;

use async_trait::async_trait;

use super::EventLog;

/// How the suite obtains stores of the implementation under test.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A store to run one case against (it may hold other data already).
    async fn open(&self) -> Arc<dyn EventLog>;
    /// Closes `log` and opens the same store again, as after a process restart.
    async fn reopen(&self, log: Arc<dyn EventLog>) -> Arc<dyn EventLog>;
}
