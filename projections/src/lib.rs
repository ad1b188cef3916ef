//! Sphere EHR read models: each is fed one event at a time by the projection runner in the
//! application crate, and keeps its own checkpoint with its data so that the two can never
//! disagree after a crash.
//!
//! A projection never reads the event log itself and never speaks HTTP: that keeps every read
//! model testable with a plain list of events, and lets the same code run against either log.

pub mod audit_view;
pub mod search_index;
pub mod sqlite;
pub mod stats;
pub mod token_status;

use sphere_domain::envelope::{EventFilter, Position, RecordedEvent};

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("projection storage failed: {0}")]
    Storage(String),
    /// The event cannot be applied (malformed body): the runner stops rather than skip it.
    #[error("cannot apply event at position {position}: {message}")]
    BadEvent { position: Position, message: String },
}

/// A read model built from the log.
pub trait Projection: Send + 'static {
    /// The name operators use (`sphere rebuild <name>`).
    fn name(&self) -> &'static str;

    /// The position of the last event whose effect is durably stored, `None` if nothing is.
    fn checkpoint(&self) -> Option<Position>;

    /// Applies one event. It need not be durable until [`Projection::commit`].
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError>;

    /// Makes everything applied so far durable and visible to queries, with `position` as the
    /// checkpoint (which may be past the last applied event when the runner skipped events
    /// the projection does not care about).
    fn commit(&mut self, position: Position) -> Result<(), ProjectionError>;

    /// Least time between two live commits. Events that arrive meanwhile are applied but not
    /// visible until the next commit, which comes sooner when a request waits for them. Zero
    /// (the default) commits every live batch; projections whose readers can wait a moment
    /// (statistics, the access history view) take fewer, larger commits, which matters when
    /// every read appends an access record.
    fn commit_interval(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Drops every derived row and the checkpoint, for a rebuild from the start of the log.
    fn reset(&mut self) -> Result<(), ProjectionError>;

    /// The events the projection takes; the runner subscribes with it, so the others are
    /// never read, decoded or applied (and never cost a commit).
    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }
}

impl Projection for Box<dyn Projection> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn checkpoint(&self) -> Option<Position> {
        (**self).checkpoint()
    }
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        (**self).apply(event)
    }
    fn commit(&mut self, position: Position) -> Result<(), ProjectionError> {
        (**self).commit(position)
    }
    fn reset(&mut self) -> Result<(), ProjectionError> {
        (**self).reset()
    }
    fn filter(&self) -> EventFilter {
        (**self).filter()
    }
    fn commit_interval(&self) -> std::time::Duration {
        (**self).commit_interval()
    }
}
