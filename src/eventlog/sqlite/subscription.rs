//! Catch-up subscriptions over the embedded log.
//!
//! The task reads `$all` in pages up to a known head, so every page is a closed range
//! `(cursor, upto]` of committed positions: nothing past `upto` can be half-visible, and since
//! the writer assigns positions under its lock, nothing below `upto` can still appear later.
//! That is what makes "historical, caught up, live" gap-free and duplicate-free.

use tokio::sync::mpsc;

use super::{reader, SqliteLog};
use crate::eventlog::{EventFilter, EventLogError, Position, Subscription, SubscriptionMessage};

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
    let mut head = log.head_watch();
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
        let upto = *head.borrow_and_update();
        if upto > cursor {
            if !deliver(log, &mut cursor, upto, &filter, sender).await? {
                return Ok(());
            }
            continue;
        }
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = sender.closed() => return Ok(()),
        }
    }
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
    let mut delivered = *cursor;
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
        for event in events {
            delivered = event.position.0;
            if sender
                .send(Ok(SubscriptionMessage::Event(event)))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
    }
    if delivered < upto
        && sender
            .send(Ok(SubscriptionMessage::Checkpoint(Position(upto))))
            .await
            .is_err()
    {
        return Ok(false);
    }
    Ok(true)
}
