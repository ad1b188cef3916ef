//! The projection runner: feeds a projection every event after its checkpoint (catch-up, then
//! live), commits in batches, and publishes how far it has applied so that request handlers
//! can wait for their own writes.
//!
//! The runner subscribes to `$all` with the projection's [`Projection::filter`], so the
//! projection never sees (nor decodes) events it does not take. The subscription's
//! checkpoints say how far the log has been looked through, and the runner publishes that
//! position as soon as nothing applied is waiting for a commit: a handler waiting for
//! position P is released once everything up to P has been considered, even when P holds an
//! event the projection filtered out (the access history of a read, for the search index).
//! That position moves without a commit; the stored checkpoint catches up with it at the
//! next commit.
//!
//! A projection with a [`Projection::commit_interval`] commits live events at most that often
//! (the position it publishes stops before its first uncommitted event), and at once when a
//! request waits for a position it has applied but not committed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sphere_projections::{Projection, ProjectionError};
use tokio::sync::{watch, Notify};

use crate::eventlog::{EventLog, EventLogError, Position, RecordedEvent, SubscriptionMessage};

/// Events applied between two commits while catching up (commits are what cost).
const CATCH_UP_COMMIT_EVERY: usize = 50_000;
const CATCH_UP_COMMIT_INTERVAL: Duration = Duration::from_secs(2);
/// Most events taken from the subscription before applying them.
const BATCH: usize = 4096;
/// Least time between two commits that only move the checkpoint past events the projection
/// filtered out.
const CHECKPOINT_ONLY_INTERVAL: Duration = Duration::from_secs(10);

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
    resumed_from: Option<Position>,
    applied: watch::Receiver<u64>,
    state: watch::Receiver<RunnerState>,
    demand: Arc<Demand>,
}

/// The newest position a request waits for, so that a projection that commits at intervals
/// commits at once when somebody needs its state.
#[derive(Default)]
struct Demand {
    wanted: AtomicU64,
    wake: Notify,
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

    /// The stored checkpoint the projection started from, `None` when it started empty.
    pub fn resumed_from(&self) -> Option<Position> {
        self.resumed_from
    }

    pub fn state(&self) -> RunnerState {
        self.state.borrow().clone()
    }

    /// Waits until everything committed up to `position` is applied (read-your-writes),
    /// at most `bound`.
    pub async fn wait_for(&self, position: Position, bound: Duration) -> Result<(), WaitError> {
        let mut applied = self.applied.clone();
        if *applied.borrow() < position.0 {
            self.demand.wanted.fetch_max(position.0, Ordering::AcqRel);
            self.demand.wake.notify_one();
        }
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
    let resumed_from = projection.checkpoint();
    let start = resumed_from.map(|p| p.0).unwrap_or(0);
    let (applied_tx, applied) = watch::channel(start);
    let (state_tx, state) = watch::channel(RunnerState::CatchingUp);
    let demand = Arc::new(Demand::default());
    let wanted = demand.clone();
    tokio::spawn(async move {
        if let Err(e) = run(log, projection, &applied_tx, &state_tx, &wanted).await {
            tracing::error!(projection = name, error = %e, "projection stopped");
            let _ = state_tx.send(RunnerState::Failed(e.to_string()));
        }
    });
    ProjectionHandle {
        name,
        resumed_from,
        applied,
        state,
        demand,
    }
}

async fn run<P: Projection>(
    log: Arc<dyn EventLog>,
    projection: P,
    applied: &watch::Sender<u64>,
    state: &watch::Sender<RunnerState>,
    demand: &Demand,
) -> Result<(), RunnerError> {
    let checkpoint = projection.checkpoint();
    let interval = projection.commit_interval();
    let mut subscription = log.subscribe(checkpoint, projection.filter()).await?;
    let mut projection = Some(projection);
    let mut live = false;
    // The stored checkpoint, and how far the subscription has looked (every event up to
    // `scanned` that matches the filter is in `batch`, applied, or committed).
    let mut stored = checkpoint.map(|p| p.0).unwrap_or(0);
    let mut scanned = stored;
    // Events applied since the last commit (while there are any, the visible state lags),
    // and the position of the first of them.
    let mut uncommitted = 0usize;
    let mut first_uncommitted: Option<u64> = None;
    let mut last_commit = Instant::now();
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(BATCH);
    loop {
        // With applied events waiting for a commit, the commit interval or a waiting request
        // may end the wait before the log has anything new.
        let next = if uncommitted > 0 && live {
            let due = tokio::time::Instant::from_std(last_commit + interval);
            tokio::select! {
                message = subscription.next() => Some(message),
                _ = demand.wake.notified() => None,
                _ = tokio::time::sleep_until(due) => None,
            }
        } else {
            Some(subscription.next().await)
        };
        let mut became_live = false;
        if let Some(message) = next {
            let Some(first) = message else {
                return Ok(()); // the log shut down
            };
            take(first, &mut batch, &mut scanned, &mut became_live)?;
            while batch.len() < BATCH {
                match subscription.try_next() {
                    Some(message) => take(message, &mut batch, &mut scanned, &mut became_live)?,
                    None => break,
                }
            }
        }
        if uncommitted == 0 {
            first_uncommitted = batch.first().map(|e| e.position.0);
        }
        uncommitted += batch.len();
        // Everything before the first uncommitted event is in the visible state.
        let visible = first_uncommitted.map_or(scanned, |first| first - 1);
        let wanted = demand.wanted.load(Ordering::Acquire) > visible;
        let commit_at = if uncommitted > 0 {
            ((live && (wanted || last_commit.elapsed() >= interval))
                || became_live
                || uncommitted >= CATCH_UP_COMMIT_EVERY
                || last_commit.elapsed() >= CATCH_UP_COMMIT_INTERVAL)
                .then_some(Position(scanned))
        } else {
            // Only the log moved, past events this projection does not take: its visible
            // state already covers them. Storing the checkpoint is worth a commit now and
            // then only, so that a restart does not look through them again.
            (scanned > stored && last_commit.elapsed() >= CHECKPOINT_ONLY_INTERVAL)
                .then_some(Position(scanned))
        };
        if !batch.is_empty() || commit_at.is_some() {
            let events = std::mem::take(&mut batch);
            let mut owned = projection
                .take()
                .ok_or_else(|| RunnerError::Task("projection lost".into()))?;
            let (owned, outcome) = tokio::task::spawn_blocking(move || {
                let outcome = apply_batch(&mut owned, &events, commit_at);
                (owned, outcome)
            })
            .await
            .map_err(|e| RunnerError::Task(e.to_string()))?;
            projection = Some(owned);
            outcome?;
        }
        let visible = if let Some(position) = commit_at {
            stored = position.0;
            uncommitted = 0;
            first_uncommitted = None;
            last_commit = Instant::now();
            scanned
        } else {
            visible
        };
        applied.send_if_modified(|published| {
            let moved = *published < visible;
            *published = (*published).max(visible);
            moved
        });
        if became_live && !live {
            live = true;
            let _ = state.send(RunnerState::Live);
        }
    }
}

fn take(
    message: Result<SubscriptionMessage, EventLogError>,
    batch: &mut Vec<RecordedEvent>,
    scanned: &mut u64,
    became_live: &mut bool,
) -> Result<(), RunnerError> {
    match message? {
        SubscriptionMessage::Event(e) => {
            *scanned = (*scanned).max(e.position.0);
            batch.push(e);
        }
        SubscriptionMessage::Checkpoint(p) => *scanned = (*scanned).max(p.0),
        SubscriptionMessage::CaughtUp => *became_live = true,
    }
    Ok(())
}

fn apply_batch<P: Projection>(
    projection: &mut P,
    events: &[RecordedEvent],
    commit_at: Option<Position>,
) -> Result<(), ProjectionError> {
    for event in events {
        projection.apply(event)?;
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
    let filter = projection.filter();
    let mut after = None;
    let mut events = 0u64;
    let mut since_commit = 0usize;
    let mut committed = None;
    loop {
        let page = log.read_all(after, &filter, PAGE).await?;
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
            committed = Some(last);
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
    // Past the last event taken: the events after it up to the head were filtered out.
    let end = after.map_or(head, |last| last.max(head));
    if committed != Some(end) {
        tokio::task::block_in_place(|| projection.commit(end))?;
    }
    Ok(events)
}
