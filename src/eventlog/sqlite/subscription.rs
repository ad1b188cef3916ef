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

/// Sends every matching event in `(cursor, upto]` and moves `cursor` to `upto`.
/// `Ok(false)` when the subscriber went away.
async fn deliver(
    log: &SqliteLog,
    cursor: &mut u64,
    upto: u64,
    filter: &EventFilter,
    sender: &Sender,
) -> Result<bool, EventLogError> {
    while *cursor < upto {
        let from = *cursor;
        let page_filter = filter.clone();
        let events = log
            .read(move |conn| {
                reader::read_range(
                    conn,
                    Some(Position(from)),
                    Some(Position(upto)),
                    &page_filter,
                    PAGE,
                )
            })
            .await?;
        let full = events.len() == PAGE;
        let last = events.last().map(|e| e.position.0);
        for event in events {
            if sender
                .send(Ok(SubscriptionMessage::Event(event)))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
        *cursor = match (full, last) {
            (true, Some(last)) => last,
            _ => upto,
        };
    }
    Ok(true)
}
