//! [`DiskQueue`]: a [`DiskBuffer`] shared by a sink's writer (taking
//! batches in from the sink's input queue) and its reader (the sink
//! loop), with the waits of both: a reader waits for records, a writer for
//! room (`when_full = "block"`) or for a full disk to have space again.
//!
//! One queue per folder in the process: a sink rebuilt by a reload opens
//! the folder while its predecessor may still be draining, and both then
//! share the one queue (two writers of one folder would corrupt it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::disk::{BufferError, DiskBuffer, Encoded, ReadRecord};
use super::metrics::BufferMetrics;
use crate::edge::WhenFull;
use crate::event::{BatchId, EventBatch};

/// How often written data is fsynced (see the module's fsync policy).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long a writer waits before trying again after a failed write (a
/// full disk), unless acknowledgements free space first.
pub const WRITE_RETRY: Duration = Duration::from_secs(1);
/// The shortest time between two log lines about failing writes.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

static OPEN: Mutex<Option<HashMap<PathBuf, Weak<DiskQueue>>>> = Mutex::new(None);

/// A disk buffer with its waits.
#[derive(Debug)]
pub struct DiskQueue {
    buffer: Mutex<DiskBuffer>,
    readable: Notify,
    writable: Notify,
    writers: AtomicUsize,
    owner: String,
    metrics: BufferMetrics,
    last_error_log: Mutex<Option<Instant>>,
    /// The epoch of the batch identities handed out: the buffer folder's
    /// inode, the same for as long as the folder (and its record numbers)
    /// lives.
    epoch: u64,
}

/// What became of a pushed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// On disk (in the kernel's hands).
    Written,
    /// Dropped, the buffer being full (`when_full = "drop_newest"`), or the
    /// batch too large for a record.
    Dropped,
}

impl DiskQueue {
    /// Opens the buffer in `dir` (or joins the queue already open there)
    /// and starts its periodic fsync. Must run inside a tokio runtime.
    pub fn open(
        dir: &Path,
        max_size: u64,
        metrics: BufferMetrics,
        owner: String,
    ) -> Result<Arc<DiskQueue>, BufferError> {
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        let open = open.get_or_insert_with(HashMap::new);
        open.retain(|_, queue| queue.strong_count() > 0);
        if let Some(queue) = open.get(dir).and_then(Weak::upgrade) {
            queue.lock().set_max_size(max_size);
            return Ok(queue);
        }
        let buffer = DiskBuffer::open(dir, max_size, metrics.clone())?;
        let epoch = std::fs::metadata(dir)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap_or(0);
        metrics.max_bytes.set(max_size as f64);
        let recovered = buffer.unacked_events();
        if recovered > 0 {
            tracing::info!(component = %owner, dir = %dir.display(), events = recovered, "disk buffer resumed: delivering what an earlier run left");
        }
        let queue = Arc::new(DiskQueue {
            buffer: Mutex::new(buffer),
            readable: Notify::new(),
            writable: Notify::new(),
            writers: AtomicUsize::new(0),
            owner,
            metrics,
            last_error_log: Mutex::new(None),
            epoch,
        });
        open.insert(dir.to_path_buf(), Arc::downgrade(&queue));
        tokio::spawn(sync_every(Arc::downgrade(&queue)));
        Ok(queue)
    }

    fn lock(&self) -> MutexGuard<'_, DiskBuffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `batch`: waits for room with `block`, drops it (the caller
    /// counts) with `drop_newest`. A failing write (no space left on the
    /// device) is logged and retried every [`WRITE_RETRY`] with `block`:
    /// nothing is lost and upstream waits.
    pub async fn push(&self, batch: &EventBatch, when_full: WhenFull) -> Pushed {
        let mut record = Encoded::new(batch);
        loop {
            let room = self.writable.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            let result = self.lock().append(&mut record, batch);
            match result {
                Ok(_) => {
                    self.readable.notify_waiters();
                    return Pushed::Written;
                }
                Err(BufferError::Full { .. }) if when_full == WhenFull::Block => room.await,
                Err(BufferError::Full { .. }) => return Pushed::Dropped,
                Err(error @ BufferError::TooLarge(_)) => {
                    tracing::error!(component = %self.owner, %error, events = batch.len(), "batch dropped");
                    return Pushed::Dropped;
                }
                Err(error) => {
                    self.metrics.write_errors.increment(1);
                    self.log_write_error(&error, when_full);
                    if when_full == WhenFull::DropNewest {
                        return Pushed::Dropped;
                    }
                    tokio::select! {
                        _ = room => {}
                        _ = tokio::time::sleep(WRITE_RETRY) => {}
                    }
                }
            }
        }
    }

    fn log_write_error(&self, error: &BufferError, when_full: WhenFull) {
        let mut last = self.last_error_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= ERROR_LOG_EVERY) {
            *last = Some(Instant::now());
            let consequence = match when_full {
                WhenFull::Block => "blocking (upstream waits) and retrying every second until it succeeds",
                WhenFull::DropNewest => "dropping the batch (when_full = \"drop_newest\")",
            };
            tracing::error!(component = %self.owner, %error, "cannot write to the disk buffer: {consequence}");
        }
    }

    /// Registers a writer; the readers of this process see the end of the
    /// input once every writer is gone (see [`Reader`]).
    pub fn writer(self: &Arc<Self>) -> Writer {
        self.writers.fetch_add(1, Ordering::AcqRel);
        Writer {
            queue: self.clone(),
            done: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The next record; `None` once nothing is left to read and `done` (the
    /// reader's own writer has finished). Cancel-safe.
    pub async fn pop(&self, done: &AtomicBool) -> Option<ReadRecord> {
        loop {
            let more = self.readable.notified();
            tokio::pin!(more);
            more.as_mut().enable();
            if let Some(mut record) = self.lock().read_next() {
                record.batch.set_id(Some(BatchId {
                    epoch: self.epoch,
                    first: record.id,
                    last: record.id,
                }));
                return Some(record);
            }
            if done.load(Ordering::Acquire) {
                return None;
            }
            more.await;
        }
    }

    /// Acknowledges records handed out by [`pop`](Self::pop).
    pub fn ack(&self, tickets: impl IntoIterator<Item = u64>) {
        {
            let mut buffer = self.lock();
            for ticket in tickets {
                buffer.ack(ticket);
            }
        }
        self.writable.notify_waiters();
    }

    /// Events written and not yet acknowledged.
    pub fn unacked_events(&self) -> u64 {
        self.lock().unacked_events()
    }

    /// fsyncs what was written since the last sync.
    pub async fn sync(&self) {
        let files = self.lock().take_sync();
        if files.is_empty() {
            return;
        }
        let owner = self.owner.clone();
        let synced = tokio::task::spawn_blocking(move || {
            for file in files {
                if let Err(error) = file.sync_data() {
                    tracing::error!(component = %owner, %error, "cannot fsync the disk buffer");
                }
            }
        });
        let _ = synced.await;
    }
}

/// A writer's registration: dropping it tells the readers of its sink
/// that no more input comes from it.
#[derive(Debug)]
pub struct Writer {
    queue: Arc<DiskQueue>,
    done: Arc<AtomicBool>,
}

impl Writer {
    /// The flag its sink's reader passes to [`DiskQueue::pop`].
    pub fn done_flag(&self) -> Arc<AtomicBool> {
        self.done.clone()
    }

    /// The queue.
    pub fn queue(&self) -> &Arc<DiskQueue> {
        &self.queue
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.writers.fetch_sub(1, Ordering::AcqRel);
        self.done.store(true, Ordering::Release);
        self.queue.readable.notify_waiters();
    }
}

/// The fsync policy's timer: every [`SYNC_INTERVAL`] while the queue lives.
async fn sync_every(queue: Weak<DiskQueue>) {
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(queue) = queue.upgrade() else { return };
        queue.sync().await;
    }
}
