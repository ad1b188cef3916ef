//! Catch-up subscriptions over the embedded log.
//!
//! Catching up, the task reads `$all` in pages up to a known head, so every page is a closed
//! range `(cursor, upto]` of committed positions: nothing past `upto` can be half-visible, and
//! since the writer assigns positions under its lock, nothing below `upto` can still appear
//! later. That is what makes "historical, caught up, live" gap-free and duplicate-free.
//!
//! Live, the task takes each commit's events from the writer's feed ([`Committed`]) instead
//! of reading them back from the file: a commit is one contiguous range of positions, so a
//! commit that starts at the cursor is delivered from memory, and anything else - another
//! process's commit, a subscription that fell more than the feed holds behind - is read from
//! the file up to where the feed resumes. With the access history on, the log commits hundreds
//! of times a second, and each read cost every projection a blocking task and a query.

use tokio::sync::{broadcast, mpsc};

use super::{reader, Committed, SqliteLog};
use crate::eventlog::{
    EventFilter, EventLogError, Position, RecordedEvent, Subscription, SubscriptionMessage,
};

const PAGE: usize = 1024;
const BUFFER: usize = 4096;

pub fn start(log: SqliteLog, after: Option<Position>, filter: EventFilter) -> Subscription {
    let (sender, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        if let Err(e) = run(&log, after, filter, &sender).await {
            let _ = sender.send(Err(e)).await;
        }
    });
    Subscription::new(receiver)
}

type Sender = mpsc::Sender<Result<SubscriptionMessage, EventLogError>>;

/// `Ok` when the subscriber went away; `Err` when the log failed.
async fn run(
    log: &SqliteLog,
    after: Option<Position>,
    filter: EventFilter,
    sender: &Sender,
) -> Result<(), EventLogError> {
    // Taken before the head is read, so that no commit after it is missed.
    let mut feed = log.feed();
    // The true head from the file, not the watch: another process may have appended.
    let start = crate::eventlog::EventLog::head(log).await?;
    let mut cursor = after.map(|p| p.0).unwrap_or(0);
    if let Some(start) = start {
        if start.0 > cursor && !deliver(log, &mut cursor, start.0, &filter, sender).await? {
            return Ok(());
        }
    }
    if sender
        .send(Ok(SubscriptionMessage::CaughtUp))
        .await
        .is_err()
    {
        return Ok(());
    }
    loop {
        let commit = tokio::select! {
            commit = feed.recv() => commit,
            _ = sender.closed() => return Ok(()),
        };
        let delivered = match commit {
            Ok(commit) => take_commit(log, &mut cursor, commit, &filter, sender).await?,
            // Fell behind the feed: read what was missed from the file.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let upto = *log.head_watch().borrow();
                upto <= cursor || deliver(log, &mut cursor, upto, &filter, sender).await?
            }
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        if !delivered {
            return Ok(());
        }
    }
}

/// Delivers `commit` past `cursor`: from the file up to where it starts when there is a gap
/// before it, then its events from memory. `Ok(false)` when the subscriber went away.
async fn take_commit(
    log: &SqliteLog,
    cursor: &mut u64,
    commit: Committed,
    filter: &EventFilter,
    sender: &Sender,
) -> Result<bool, EventLogError> {
    if commit.upto <= *cursor {
        return Ok(true); // already read from the file
    }
    if commit.after > *cursor && !deliver(log, cursor, commit.after, filter, sender).await? {
        return Ok(false);
    }
    let fresh = commit
        .events
        .iter()
        .filter(|e| e.position.0 > *cursor && filter.matches(&e.stream, &e.event_type));
    let delivered = send_events(fresh.cloned(), sender).await;
    *cursor = commit.upto;
    finish(delivered, commit.upto, sender).await
}

/// Sends `events`; `None` when the subscriber went away, else the position of the last one.
async fn send_events(
    events: impl Iterator<Item = RecordedEvent>,
    sender: &Sender,
) -> Option<Option<u64>> {
    let mut last = None;
    for event in events {
        last = Some(event.position.0);
        if sender
            .send(Ok(SubscriptionMessage::Event(event)))
            .await
            .is_err()
        {
            return None;
        }
    }
    Some(last)
}

/// After delivering up to `upto`: when the filter dropped the events at the end of the range,
/// a [`SubscriptionMessage::Checkpoint`] at `upto` says so.
async fn finish(
    delivered: Option<Option<u64>>,
    upto: u64,
    sender: &Sender,
) -> Result<bool, EventLogError> {
    let Some(last) = delivered else {
        return Ok(false);
    };
    if last != Some(upto)
        && sender
            .send(Ok(SubscriptionMessage::Checkpoint(Position(upto))))
            .await
            .is_err()
    {
        return Ok(false);
    }
    Ok(true)
}

/// Sends every matching event in `(cursor, upto]` and moves `cursor` to `upto`; when the
/// filter dropped the events at the end of the range, a [`SubscriptionMessage::Checkpoint`]
/// at `upto` says so. `Ok(false)` when the subscriber went away. The next page is read while
/// the current one is being handed over, so reading and delivering overlap.
async fn deliver(
    log: &SqliteLog,
    cursor: &mut u64,
    upto: u64,
    filter: &EventFilter,
    sender: &Sender,
) -> Result<bool, EventLogError> {
    let read_page = |from: u64| {
        let log = log.clone();
        let filter = filter.clone();
        tokio::spawn(async move {
            log.read(move |conn| {
                reader::read_range(
                    conn,
                    Some(Position(from)),
                    Some(Position(upto)),
                    &filter,
                    PAGE,
                )
            })
            .await
        })
    };
    let mut pending = (*cursor < upto).then(|| read_page(*cursor));
    let mut delivered = Some(None);
    while let Some(page) = pending.take() {
        let events = page
            .await
            .map_err(|e| EventLogError::Unavailable(format!("read task failed: {e}")))??;
        let full = events.len() == PAGE;
        *cursor = match (full, events.last()) {
            (true, Some(last)) => last.position.0,
            _ => upto,
        };
        if *cursor < upto {
            pending = Some(read_page(*cursor));
        }
        delivered = match send_events(events.into_iter(), sender).await {
            None => return Ok(false),
            Some(None) => delivered,
            Some(last) => Some(last),
        };
    }
    finish(delivered, upto, sender).await
}
