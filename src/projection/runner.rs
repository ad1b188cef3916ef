//! The projection runner: feeds a projection every event after its checkpoint (catch-up, then
//! live), commits in batches, and publishes how far it has applied so that request handlers
//! can wait for their own writes.
//!
//! The runner subscribes to all of `$all` and filters locally with [`Projection::wants`], so
//! its published position moves past events the projection ignores: a handler waiting for
//! position P is released as soon as everything up to P has been considered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sphere_projections::{Projection, ProjectionError};
use tokio::sync::watch;

use crate::eventlog::{
    EventFilter, EventLog, EventLogError, Position, RecordedEvent, SubscriptionMessage,
};

/// Events applied between two commits while catching up (commits are what cost).
const CATCH_UP_COMMIT_EVERY: usize = 50_000;
const CATCH_UP_COMMIT_INTERVAL: Duration = Duration::from_secs(2);
/// Most events taken from the subscription before applying them.
const BATCH: usize = 4096;

/// The state of a running projection, as the rest of the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerState {
    CatchingUp,
    Live,
    Failed(String),
}

/// A handle on a running projection.
#[derive(Clone)]
pub struct ProjectionHandle {
    name: &'static str,
    applied: watch::Receiver<u64>,
    state: watch::Receiver<RunnerState>,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("projection {name} has not reached position {wanted} within {bound:?} (at {applied})")]
    Timeout {
        name: &'static str,
        wanted: Position,
        applied: u64,
        bound: Duration,
    },
    #[error("projection {name} has stopped: {reason}")]
    Stopped { name: &'static str, reason: String },
}

impl ProjectionHandle {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The position up to which every event has been applied and committed.
    pub fn applied(&self) -> Option<Position> {
        match *self.applied.borrow() {
            0 => None,
            p => Some(Position(p)),
        }
    }

    pub fn state(&self) -> RunnerState {
        self.state.borrow().clone()
    }

    /// Waits until everything committed up to `position` is applied (read-your-writes),
    /// at most `bound`.
    pub async fn wait_for(&self, position: Position, bound: Duration) -> Result<(), WaitError> {
        let mut applied = self.applied.clone();
        let reached = async {
            loop {
                if *applied.borrow_and_update() >= position.0 {
                    return Ok(());
                }
                if let RunnerState::Failed(reason) = self.state() {
                    return Err(WaitError::Stopped {
                        name: self.name,
                        reason,
                    });
                }
                if applied.changed().await.is_err() {
                    return Err(WaitError::Stopped {
                        name: self.name,
                        reason: "runner ended".into(),
                    });
                }
            }
        };
        match tokio::time::timeout(bound, reached).await {
            Ok(result) => result,
            Err(_) => Err(WaitError::Timeout {
                name: self.name,
                wanted: position,
                applied: *self.applied.borrow(),
                bound,
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("projection task failed: {0}")]
    Task(String),
}

/// Starts `projection` on a task of its own and returns its handle.
pub fn spawn<P: Projection>(log: Arc<dyn EventLog>, projection: P) -> ProjectionHandle {
    let name = projection.name();
    let start = projection.checkpoint().map(|p| p.0).unwrap_or(0);
    let (applied_tx, applied) = watch::channel(start);
    let (state_tx, state) = watch::channel(RunnerState::CatchingUp);
    tokio::spawn(async move {
        if let Err(e) = run(log, projection, &applied_tx, &state_tx).await {
            tracing::error!(projection = name, error = %e, "projection stopped");
            let _ = state_tx.send(RunnerState::Failed(e.to_string()));
        }
    });
    ProjectionHandle {
        name,
        applied,
        state,
    }
}

async fn run<P: Projection>(
    log: Arc<dyn EventLog>,
    projection: P,
    applied: &watch::Sender<u64>,
    state: &watch::Sender<RunnerState>,
) -> Result<(), RunnerError> {
    let mut projection = Some(projection);
    let checkpoint = projection.as_ref().and_then(|p| p.checkpoint());
    let mut subscription = log.subscribe(checkpoint, EventFilter::all()).await?;
    let mut live = false;
    let mut since_commit = 0usize;
    let mut last_commit = Instant::now();
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(BATCH);
    // Whether anything was applied since the last commit. A batch the projection ignores
    // entirely (the access history of reads, for the search index) needs no commit: its
    // visible state already holds everything up to the batch's end, so the position is
    // published without rewriting the index. (The stored checkpoint then lags; on restart
    // those events are skipped again.)
    let mut dirty = false;
    loop {
        let Some(first) = subscription.next().await else {
            return Ok(()); // the log shut down
        };
        let mut became_live = false;
        take(first, &mut batch, &mut became_live)?;
        while batch.len() < BATCH {
            match subscription.try_next() {
                Some(message) => take(message, &mut batch, &mut became_live)?,
                None => break,
            }
        }
        let Some(last) = batch.last().map(|e| e.position) else {
            if became_live && !live {
                live = true;
                let _ = state.send(RunnerState::Live);
            }
            continue;
        };
        since_commit += batch.len();
        let commit_now = live
            || became_live
            || since_commit >= CATCH_UP_COMMIT_EVERY
            || last_commit.elapsed() >= CATCH_UP_COMMIT_INTERVAL;
        let events = std::mem::take(&mut batch);
        let mut owned = projection
            .take()
            .ok_or_else(|| RunnerError::Task("projection lost".into()))?;
        let (owned, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = apply_live(&mut owned, &events, commit_now.then_some(last), dirty);
            (owned, outcome)
        })
        .await
        .map_err(|e| RunnerError::Task(e.to_string()))?;
        projection = Some(owned);
        dirty = outcome? && !commit_now;
        if commit_now {
            since_commit = 0;
            last_commit = Instant::now();
            applied.send_replace(last.0);
        }
        if became_live && !live {
            live = true;
            let _ = state.send(RunnerState::Live);
        }
    }
}

fn take(
    message: Result<SubscriptionMessage, EventLogError>,
    batch: &mut Vec<RecordedEvent>,
    became_live: &mut bool,
) -> Result<(), RunnerError> {
    match message? {
        SubscriptionMessage::Event(e) => batch.push(e),
        SubscriptionMessage::CaughtUp => *became_live = true,
    }
    Ok(())
}

/// Applies `events`; commits at `commit_at` if anything was applied since the last commit
/// (`dirty`) or now. Returns whether anything was applied.
fn apply_live<P: Projection>(
    projection: &mut P,
    events: &[RecordedEvent],
    commit_at: Option<Position>,
    dirty: bool,
) -> Result<bool, ProjectionError> {
    let mut applied = dirty;
    for event in events {
        if projection.wants(event) {
            projection.apply(event)?;
            applied = true;
        }
    }
    if let (Some(position), true) = (commit_at, applied) {
        projection.commit(position)?;
    }
    Ok(applied)
}

fn apply_batch<P: Projection>(
    projection: &mut P,
    events: &[RecordedEvent],
    commit_at: Option<Position>,
) -> Result<(), ProjectionError> {
    for event in events {
        if projection.wants(event) {
            projection.apply(event)?;
        }
    }
    if let Some(position) = commit_at {
        projection.commit(position)?;
    }
    Ok(())
}

/// Progress of a rebuild, reported after every page.
#[derive(Debug, Clone, Copy)]
pub struct RebuildProgress {
    pub events: u64,
    pub position: Position,
    pub head: Position,
}

/// Drops `projection`'s data and replays the whole log into it, calling `progress` after each
/// page. Returns the number of events replayed.
pub async fn rebuild<P: Projection>(
    log: &dyn EventLog,
    projection: &mut P,
    mut progress: impl FnMut(RebuildProgress),
) -> Result<u64, RunnerError> {
    const PAGE: usize = 10_000;
    projection.reset()?;
    let Some(head) = log.head().await? else {
        return Ok(0);
    };
    let mut after = None;
    let mut events = 0u64;
    let mut since_commit = 0usize;
    loop {
        let page = log.read_all(after, &EventFilter::all(), PAGE).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        since_commit += page.len();
        events += page.len() as u64;
        let commit = since_commit >= CATCH_UP_COMMIT_EVERY || last >= head;
        // Blocking work on this task is fine: rebuild runs offline, from the CLI.
        tokio::task::block_in_place(|| apply_batch(projection, &page, commit.then_some(last)))?;
        if commit {
            since_commit = 0;
        }
        after = Some(last);
        progress(RebuildProgress {
            events,
            position: last,
            head,
        });
        if last >= head {
            break;
        }
    }
    if since_commit > 0 {
        if let Some(last) = after {
            tokio::task::block_in_place(|| projection.commit(last))?;
        }
    }
    Ok(events)
}
