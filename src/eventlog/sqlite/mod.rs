//! The embedded event log: one SQLite file in WAL mode with `synchronous=FULL`.
//!
//! - [`writer`]: one thread owns the write connection and group-commits every waiting append;
//!   callers are answered only after the commit is durable.
//! - [`reader`]: reads run on their own read-only connections and never wait for the writer.
//! - [`subscription`]: catch-up subscriptions wake on a head-position watch that the writer
//!   moves after each commit; a poller moves it too when another process (a CLI import while
//!   the server runs) appends to the same file.

mod reader;
pub mod schema;
mod subscription;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::{
    AppendResult, Direction, EventFilter, EventLog, EventLogError, ExpectedRevision, NewEvent,
    Position, RecordedEvent, StreamStart, StreamWrite, Subscription,
};
use reader::ReaderPool;
pub use writer::now_ms;
pub use writer::Committed;
use writer::{WriteRequest, Writer};

/// How often the log looks for events appended by another process.
const FOREIGN_POLL: Duration = Duration::from_millis(250);

/// Commits a live subscription may fall behind by before it reads from the file instead.
const FEED_COMMITS: usize = 1024;

/// Stream reads of at most this many events run on the calling task (see `read_stream`).
const POINT_READ: usize = 8;

/// Most reads running at once (and read connections kept open).
const READERS: usize = 16;

/// The embedded SQLite event log. Cheap to clone; clones share one writer.
#[derive(Clone)]
pub struct SqliteLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    requests: Mutex<Option<mpsc::UnboundedSender<WriteRequest>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: ReaderPool,
    /// Position of the newest committed event (0 for an empty log).
    head: watch::Sender<u64>,
    /// Each commit's events, as live subscriptions take them (no read of the file).
    feed: broadcast::Sender<Committed>,
}

impl SqliteLog {
    /// Opens (creating if needed) the log in `dir`. Must be called inside a tokio runtime.
    pub fn open(dir: &Path) -> Result<Self, EventLogError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            EventLogError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = schema::database_path(dir);
        let conn = schema::connect(&path, false)?;
        schema::initialize(&conn, &path)?;
        // Checkpoints move WAL pages into the database file and fsync it; done on the
        // writer's thread they stall every append behind them, so a thread of their own
        // does them instead.
        // `journal_size_limit` acts on the connection that writes the first frame after the
        // WAL starts over (this one): the file is cut back to 64 MiB then.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")
            .map_err(|e| schema::open_error(&path, e))?;
        let head_now = reader::head(&conn)?.map(|p| p.0).unwrap_or(0);
        let (head, _) = watch::channel(head_now);
        let (feed, _) = broadcast::channel(FEED_COMMITS);
        let writer = Writer::new(conn, path.clone(), head.clone(), feed.clone())?;
        let (requests, receiver) = mpsc::unbounded_channel();
        let writer_thread = std::thread::Builder::new()
            .name("sphere-log-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| EventLogError::Unavailable(format!("cannot start log writer: {e}")))?;
        let inner = Arc::new(Inner {
            readers: ReaderPool::new(path.clone(), READERS),
            path,
            requests: Mutex::new(Some(requests)),
            writer_thread: Mutex::new(Some(writer_thread)),
            head,
            feed,
        });
        tokio::spawn(poll_foreign_appends(Arc::downgrade(&inner)));
        start_checkpointer(Arc::downgrade(&inner))?;
        Ok(Self { inner })
    }

    /// The SQLite file backing this log.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A receiver that changes whenever the head position moves.
    pub fn head_watch(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// Every commit from now on, with its events (see [`Committed`]).
    pub fn feed(&self) -> broadcast::Receiver<Committed> {
        self.inner.feed.subscribe()
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> Result<T, EventLogError> + Send + 'static,
    ) -> Result<T, EventLogError> {
        let inner = self.inner.clone();
        let permit = inner.readers.permit().await?;
        tokio::task::spawn_blocking(move || {
            let out = inner.readers.with(f);
            drop(permit);
            out
        })
        .await
        .map_err(|e| EventLogError::Unavailable(format!("read task failed: {e}")))?
    }

    async fn commit(&self, writes: Vec<StreamWrite>) -> Result<Vec<AppendResult>, EventLogError> {
        let (reply, answer) = oneshot::channel();
        {
            let requests = self
                .inner
                .requests
                .lock()
                .map_err(|_| EventLogError::Closed)?;
            let sender = requests.as_ref().ok_or(EventLogError::Closed)?;
            sender
                .send(WriteRequest { writes, reply })
                .map_err(|_| EventLogError::Closed)?;
        }
        answer.await.map_err(|_| EventLogError::Closed)?
    }

    /// Stores a named checkpoint (used by projections that keep no storage of their own).
    pub async fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> Result<(), EventLogError> {
        let path = self.inner.path.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = schema::connect(&path, false)?;
            conn.execute(
                "INSERT INTO checkpoints (name, position) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                rusqlite::params![name, position.0 as i64],
            )
            .map_err(reader::read_error)?;
            Ok(())
        })
        .await
        .map_err(|e| EventLogError::Unavailable(format!("checkpoint task failed: {e}")))?
    }

    /// Counts for `sphere log stats`: events, streams, and events per category.
    pub async fn stats(&self) -> Result<LogStats, EventLogError> {
        self.read(|conn| {
            let events: i64 = conn
                .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .map_err(reader::read_error)?;
            let streams: i64 = conn
                .query_row("SELECT COUNT(DISTINCT stream) FROM events", [], |r| r.get(0))
                .map_err(reader::read_error)?;
            let mut statement = conn
                .prepare(
                    "SELECT category, COUNT(DISTINCT stream), COUNT(*) FROM events GROUP BY category ORDER BY category",
                )
                .map_err(reader::read_error)?;
            let categories = statement
                .query_map([], |r| {
                    Ok(CategoryStats {
                        category: r.get(0)?,
                        streams: r.get::<_, i64>(1)? as u64,
                        events: r.get::<_, i64>(2)? as u64,
                    })
                })
                .map_err(reader::read_error)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(reader::read_error)?;
            let head = reader::head(conn)?;
            let (first_ms, last_ms): (Option<i64>, Option<i64>) = conn
                .query_row(
                    "SELECT MIN(created_ms), MAX(created_ms) FROM events",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(reader::read_error)?;
            Ok(LogStats {
                events: events as u64,
                streams: streams as u64,
                head,
                first_commit_ms: first_ms,
                last_commit_ms: last_ms,
                categories,
            })
        })
        .await
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogStats {
    pub events: u64,
    pub streams: u64,
    pub head: Option<Position>,
    pub first_commit_ms: Option<i64>,
    pub last_commit_ms: Option<i64>,
    pub categories: Vec<CategoryStats>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CategoryStats {
    pub category: String,
    pub streams: u64,
    pub events: u64,
}

/// How often the WAL is folded back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// WAL length (frames of one 4 KiB page) past which a checkpoint also restarts the WAL.
const RESTART_FRAMES: i64 = 4096;

/// Longest a restart waits for the writer and for readers of older snapshots; past it the
/// restart is tried again on the next round. Appends wait while a restart holds the write
/// lock, so this is short; but a reader starved of CPU can hold an old snapshot for several
/// milliseconds, and with 10 ms most restarts failed under the full test suite's load (the
/// WAL reached 144 MiB of 160 written in `the_wal_stays_bounded...`).
const RESTART_WAIT: Duration = Duration::from_millis(50);

/// Keeps the WAL short while the server runs.
///
/// A PASSIVE checkpoint copies what it can without waiting for anyone, but it never makes
/// the WAL start over: SQLite rewinds the WAL only when the next write finds it wholly copied
/// and no reader on it, which never happens while reads and access records run without a
/// pause. The WAL then grew without bound (226 MB in 8 s of recorded reads), every new frame
/// landed past its end (the kernel zeroes each new page: 4.5% of the server's CPU), and
/// readers searched an ever longer WAL index. So once the WAL holds [`RESTART_FRAMES`] and a
/// PASSIVE round has copied all of it, a RESTART checkpoint waits (up to [`RESTART_WAIT`])
/// for the readers still on it to finish, after which the next commit writes from the start
/// of the file again, over pages the page cache already holds.
fn start_checkpointer(inner: std::sync::Weak<Inner>) -> Result<(), EventLogError> {
    let path = match inner.upgrade() {
        Some(inner) => inner.path.clone(),
        None => return Ok(()),
    };
    let conn = schema::connect(&path, false)?;
    conn.busy_timeout(RESTART_WAIT)
        .map_err(|e| schema::open_error(&path, e))?;
    std::thread::Builder::new()
        .name("sphere-log-checkpoint".into())
        .spawn(move || {
            let mut busy_restarts = 0u32;
            loop {
                std::thread::sleep(CHECKPOINT_EVERY);
                if inner.upgrade().is_none() {
                    return;
                }
                if let Err(e) = checkpoint(&conn, &mut busy_restarts) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })
        .map_err(|e| EventLogError::Unavailable(format!("cannot start checkpointer: {e}")))?;
    Ok(())
}

/// One checkpoint round: PASSIVE (never blocks the writer or readers), then RESTART when the
/// WAL is long and wholly copied. A restart that cannot finish in time (SQLite answers "busy"
/// in its first column, not with an error) is tried again next round; only a run of them is
/// worth a warning, since the WAL grows meanwhile (`busy_restarts` counts the run).
fn checkpoint(conn: &rusqlite::Connection, busy_restarts: &mut u32) -> rusqlite::Result<()> {
    let frames = |mode: &str| {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
    };
    let (_, logged, copied) = frames("PASSIVE")?;
    if logged >= RESTART_FRAMES && copied == logged {
        let (busy, _, _) = frames("RESTART")?;
        *busy_restarts = if busy == 0 { 0 } else { *busy_restarts + 1 };
        if *busy_restarts > 0 && busy_restarts.is_multiple_of(20) {
            tracing::warn!(
                wal_frames = logged,
                rounds = *busy_restarts,
                "the WAL could not start over: readers stayed on old snapshots"
            );
        }
    }
    Ok(())
}

/// Moves the head watch when another process appended to the same file.
async fn poll_foreign_appends(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(FOREIGN_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.head.receiver_count() == 0 && inner.feed.receiver_count() == 0 {
            continue;
        }
        let polled = SqliteLog {
            inner: inner.clone(),
        }
        .read(reader::head)
        .await;
        if let Ok(Some(position)) = polled {
            let moved = inner.head.send_if_modified(|head| {
                let moved = position.0 > *head;
                if moved {
                    *head = position.0;
                }
                moved
            });
            if moved {
                // Nothing in memory: subscriptions read up to here from the file.
                let _ = inner.feed.send(Committed {
                    after: position.0,
                    upto: position.0,
                    events: Arc::default(),
                });
            }
        }
    }
}

#[async_trait]
impl EventLog for SqliteLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventLogError> {
        let mut results = self
            .commit(vec![StreamWrite {
                stream: stream.to_owned(),
                expected,
                events,
            }])
            .await?;
        results
            .pop()
            .ok_or_else(|| EventLogError::Unavailable("writer returned no result".into()))
    }

    async fn append_multi(
        &self,
        writes: Vec<StreamWrite>,
    ) -> Result<Vec<AppendResult>, EventLogError> {
        self.commit(writes).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        start: StreamStart,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        if max <= POINT_READ {
            // A handful of rows by index from mapped pages: a few microseconds, less than
            // handing the read to a blocking thread and waking it (a tenth of a read-by-id's
            // CPU in a profile), so it runs here.
            let _permit = self.inner.readers.permit().await?;
            return self
                .inner
                .readers
                .with(|conn| reader::read_stream(conn, stream, direction, start, max));
        }
        let stream = stream.to_owned();
        self.read(move |conn| reader::read_stream(conn, &stream, direction, start, max))
            .await
    }

    async fn read_all(
        &self,
        after: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        let filter = filter.clone();
        self.read(move |conn| reader::read_range(conn, after, None, &filter, max))
            .await
    }

    async fn read_all_backwards(
        &self,
        before: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        let filter = filter.clone();
        self.read(move |conn| reader::read_range_backwards(conn, before, &filter, max))
            .await
    }

    async fn read_all_heads(
        &self,
        after: Option<Position>,
        filter: &EventFilter,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, EventLogError> {
        let filter = filter.clone();
        self.read(move |conn| reader::read_range_heads(conn, after, &filter, max))
            .await
    }

    async fn subscribe(
        &self,
        after: Option<Position>,
        filter: EventFilter,
    ) -> Result<Subscription, EventLogError> {
        Ok(subscription::start(self.clone(), after, filter))
    }

    async fn head(&self) -> Result<Option<Position>, EventLogError> {
        self.read(reader::head).await
    }

    async fn stream_revision(&self, stream: &str) -> Result<Option<u64>, EventLogError> {
        let stream = stream.to_owned();
        self.read(move |conn| reader::stream_revision(conn, &stream))
            .await
    }

    async fn stream_revisions(
        &self,
        streams: Vec<String>,
    ) -> Result<Vec<Option<u64>>, EventLogError> {
        // One blocking task and one read transaction for the lot.
        self.read(move |conn| reader::stream_revisions(conn, &streams))
            .await
    }

    async fn close(&self) -> Result<(), EventLogError> {
        // Dropping the only sender lets the writer drain what is queued, then stop.
        let sender = self
            .inner
            .requests
            .lock()
            .map_err(|_| EventLogError::Closed)?
            .take();
        drop(sender);
        let thread = self
            .inner
            .writer_thread
            .lock()
            .map_err(|_| EventLogError::Closed)?
            .take();
        if let Some(thread) = thread {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|e| EventLogError::Unavailable(format!("join failed: {e}")))?
                .map_err(|_| EventLogError::Unavailable("log writer panicked".into()))?;
        }
        Ok(())
    }
}
