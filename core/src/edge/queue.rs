//! The bounded input queue in front of every transform and sink.
//!
//! Capacity is counted in events, not batches, because batches vary from one
//! event (a flow record) to thousands (a metrics scrape). A semaphore holds
//! one permit per free slot; a batch travels with the permits it took and
//! gives them back when the consumer is done with it, so "queued" means
//! "accepted but not yet delivered".
//!
//! - `block`: [`InputSender::poll_reserve`] pends until at least one slot is
//!   free and the send waits for the rest, so backpressure reaches the
//!   producer's `poll_ready`.
//! - `drop_newest`: a batch that does not fit is dropped, counted, and
//!   logged (at most once every [`DROP_LOG_EVERY`], with the count since).
//!
//! The queue keeps its consumer's `buffer_events` gauge current on every
//! enqueue and release, so a backlog is visible while the consumer is busy
//! (a sink stuck retrying one batch), not only when it takes the next one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use crate::event::EventBatch;

/// What happens when a buffer is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Upstream waits (backpressure reaches the sources): nothing is lost in
    /// the pipeline. eBPF sources then count what the kernel could not hand over.
    #[default]
    Block,
    /// The incoming batch is dropped and counted
    /// (`sonde_component_dropped_events_total{reason="buffer_full"}`).
    DropNewest,
}

/// The shortest time between two log lines about a full `drop_newest` queue.
pub const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// What a queue reports about itself: drops (counted and logged) and its
/// occupancy (a gauge).
#[derive(Debug, Clone)]
pub struct QueueMetrics {
    /// Whose queue it is, for the log line.
    pub owner: String,
    /// Events dropped because the queue was full.
    pub dropped: Counter,
    /// Events accepted and not yet released by the consumer.
    pub buffered: Gauge,
}

impl QueueMetrics {
    /// Metrics that go nowhere (tests).
    pub fn noop() -> Self {
        QueueMetrics {
            owner: String::new(),
            dropped: Counter::noop(),
            buffered: Gauge::noop(),
        }
    }
}

/// Shared by both ends: the metrics, and the rate limit of the drop log.
#[derive(Debug)]
struct Shared {
    metrics: QueueMetrics,
    semaphore: Arc<Semaphore>,
    capacity: u32,
    /// Dropped since the last log line.
    unlogged: AtomicU64,
    last_log: std::sync::Mutex<Option<Instant>>,
}

impl Shared {
    fn update_gauge(&self) {
        let queued = self.capacity as usize - self.semaphore.available_permits().min(self.capacity as usize);
        self.metrics.buffered.set(queued as f64);
    }

    fn dropped(&self, events: u64) {
        self.metrics.dropped.increment(events);
        let unlogged = self.unlogged.fetch_add(events, Ordering::Relaxed) + events;
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= DROP_LOG_EVERY) {
            *last = Some(Instant::now());
            self.unlogged.fetch_sub(unlogged, Ordering::Relaxed);
            tracing::warn!(
                component = %self.metrics.owner,
                events = unlogged,
                "buffer full (when_full = \"drop_newest\"), events dropped"
            );
        }
    }
}

/// A batch in a queue, holding its slots until dropped.
#[derive(Debug)]
pub struct Queued {
    /// The events.
    pub batch: EventBatch,
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
}

impl Queued {
    /// Splits off the batch; the slots are freed when the returned guard drops.
    pub fn into_parts(self) -> (EventBatch, SlotGuard) {
        (
            self.batch,
            SlotGuard {
                permit: self.permit,
                shared: self.shared,
            },
        )
    }
}

/// Holds a batch's queue slots; dropping it frees them.
#[derive(Debug)]
pub struct SlotGuard {
    permit: Option<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.shared.update_gauge();
    }
}

/// The queue is closed: its consumer has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the consumer's input queue is closed")]
pub struct QueueClosed;

/// Creates a queue of `capacity` events.
pub fn queue(capacity: usize, when_full: WhenFull, metrics: QueueMetrics) -> (InputSender, InputReceiver) {
    let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS) as u32;
    let semaphore = Arc::new(Semaphore::new(capacity as usize));
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        metrics,
        semaphore: semaphore.clone(),
        capacity,
        unlogged: AtomicU64::new(0),
        last_log: std::sync::Mutex::new(None),
    });
    let sender = InputSender {
        tx,
        slots: PollSemaphore::new(semaphore.clone()),
        capacity,
        when_full,
        shared: shared.clone(),
        reserved: None,
    };
    let receiver = InputReceiver {
        rx,
        semaphore,
        capacity,
        shared,
    };
    (sender, receiver)
}

/// The producing end; cloned once per upstream.
#[derive(Debug)]
pub struct InputSender {
    tx: mpsc::UnboundedSender<Queued>,
    slots: PollSemaphore,
    capacity: u32,
    when_full: WhenFull,
    shared: Arc<Shared>,
    /// The slot taken by `poll_reserve`, used by the next `send`.
    reserved: Option<OwnedSemaphorePermit>,
}

impl Clone for InputSender {
    fn clone(&self) -> Self {
        InputSender {
            tx: self.tx.clone(),
            slots: self.slots.clone(),
            capacity: self.capacity,
            when_full: self.when_full,
            shared: self.shared.clone(),
            reserved: None,
        }
    }
}

impl InputSender {
    /// Ready when a batch may be sent: with `block`, once a slot is free.
    pub fn poll_reserve(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), QueueClosed>> {
        if self.when_full == WhenFull::DropNewest || self.reserved.is_some() {
            return Poll::Ready(Ok(()));
        }
        match self.slots.poll_acquire(cx) {
            Poll::Ready(Some(permit)) => {
                self.reserved = Some(permit);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(None) => Poll::Ready(Err(QueueClosed)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Enqueues `batch`. The future waits for free slots (`block`) or drops
    /// and counts the batch when there are none (`drop_newest`).
    pub fn send(
        &mut self,
        batch: EventBatch,
    ) -> impl std::future::Future<Output = Result<(), QueueClosed>> + Send + 'static {
        // A batch larger than the whole queue is admitted alone rather than never.
        let wanted = (batch.len() as u32).clamp(1, self.capacity);
        let reserved = self.reserved.take();
        let semaphore = self.slots.clone_inner();
        let tx = self.tx.clone();
        let when_full = self.when_full;
        let shared = self.shared.clone();
        async move {
            let permit = match when_full {
                WhenFull::Block => {
                    let mut permit = match reserved {
                        Some(permit) => permit,
                        None => semaphore.clone().acquire_owned().await.map_err(|_| QueueClosed)?,
                    };
                    if wanted > 1 {
                        let more = semaphore
                            .acquire_many_owned(wanted - 1)
                            .await
                            .map_err(|_| QueueClosed)?;
                        permit.merge(more);
                    }
                    permit
                }
                WhenFull::DropNewest => match semaphore.try_acquire_many_owned(wanted) {
                    Ok(permit) => permit,
                    Err(tokio::sync::TryAcquireError::NoPermits) => {
                        shared.dropped(batch.len() as u64);
                        return Ok(());
                    }
                    Err(tokio::sync::TryAcquireError::Closed) => return Err(QueueClosed),
                },
            };
            tx.send(Queued {
                batch,
                permit: Some(permit),
                shared: shared.clone(),
            })
            .map_err(|_| QueueClosed)?;
            shared.update_gauge();
            Ok(())
        }
    }

    /// The semaphore counting free slots (for reading occupancy).
    pub fn semaphore(&self) -> Arc<Semaphore> {
        self.slots.clone_inner()
    }

    /// A handle that does not keep the queue open (for rewiring on reload).
    pub fn downgrade(&self) -> WeakInputSender {
        WeakInputSender {
            tx: self.tx.downgrade(),
            slots: self.slots.clone(),
            capacity: self.capacity,
            when_full: self.when_full,
            shared: self.shared.clone(),
        }
    }
}

/// An [`InputSender`] that does not keep the queue open.
#[derive(Debug, Clone)]
pub struct WeakInputSender {
    tx: mpsc::WeakUnboundedSender<Queued>,
    slots: PollSemaphore,
    capacity: u32,
    when_full: WhenFull,
    shared: Arc<Shared>,
}

impl WeakInputSender {
    /// Closes the queue for good, its consumer having died: producers stop
    /// waiting for room that would never free, and send nowhere.
    pub fn close(&self) {
        self.slots.clone_inner().close();
    }

    /// A sender, while the queue is still open.
    pub fn upgrade(&self) -> Option<InputSender> {
        Some(InputSender {
            tx: self.tx.upgrade()?,
            slots: self.slots.clone(),
            capacity: self.capacity,
            when_full: self.when_full,
            shared: self.shared.clone(),
            reserved: None,
        })
    }
}

/// The consuming end.
#[derive(Debug)]
pub struct InputReceiver {
    rx: mpsc::UnboundedReceiver<Queued>,
    semaphore: Arc<Semaphore>,
    capacity: u32,
    #[allow(dead_code)] // keeps the metrics alive with the consumer
    shared: Arc<Shared>,
}

impl InputReceiver {
    /// The next batch; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Queued> {
        self.rx.recv().await
    }

    /// Events accepted but not yet released.
    pub fn queued_events(&self) -> usize {
        self.capacity as usize - self.semaphore.available_permits()
    }

    /// Stops accepting new batches; already queued ones can still be received.
    pub fn close(&mut self) {
        self.rx.close();
        self.semaphore.close();
    }

    /// Closes the queue and empties it: the number of events it still held,
    /// which the caller counts as lost (a stop that cannot wait).
    pub async fn close_and_discard(&mut self) -> u64 {
        self.close();
        let mut events = 0;
        // `recv`, not `try_recv`: it also waits for a send already under
        // way, which `try_recv` may report as an empty queue. Once closed
        // and empty it ends, whoever still holds a sender.
        while let Some(queued) = self.rx.recv().await {
            events += queued.batch.len() as u64;
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Metric};
    use std::future::poll_fn;

    fn batch(n: usize) -> EventBatch {
        (0..n).map(|i| Event::from(Metric::gauge("x", i as f64))).collect()
    }

    #[tokio::test]
    async fn block_waits_for_slots() {
        let (mut tx, mut rx) = queue(4, WhenFull::Block, QueueMetrics::noop());
        poll_fn(|cx| tx.poll_reserve(cx)).await.unwrap();
        tx.send(batch(4)).await.unwrap();
        assert_eq!(rx.queued_events(), 4);
        // Full: reserving pends until the consumer frees the batch.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(tx.poll_reserve(&mut cx).is_pending());
        let queued = rx.recv().await.unwrap();
        assert_eq!(queued.batch.len(), 4);
        drop(queued);
        assert!(tx.poll_reserve(&mut cx).is_ready());
    }

    #[tokio::test]
    async fn drop_newest_counts_what_does_not_fit() {
        // The exported counter itself, not a no-op one.
        let dropped = std::sync::Arc::new(AtomicU64::new(0));
        let metrics = QueueMetrics {
            dropped: Counter::from_arc(std::sync::Arc::clone(&dropped)),
            ..QueueMetrics::noop()
        };
        let (mut tx, mut rx) = queue(3, WhenFull::DropNewest, metrics);
        tx.send(batch(2)).await.unwrap();
        tx.send(batch(2)).await.unwrap(); // does not fit: dropped
        tx.send(batch(1)).await.unwrap();
        drop(tx);
        let mut total = 0;
        while let Some(q) = rx.recv().await {
            total += q.batch.len();
        }
        assert_eq!(total, 3);
        assert_eq!(
            dropped.load(Ordering::Relaxed),
            2,
            "the two events of the batch that did not fit"
        );
    }

    #[tokio::test]
    async fn oversized_batches_pass_alone() {
        let (mut tx, mut rx) = queue(2, WhenFull::Block, QueueMetrics::noop());
        tx.send(batch(5)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().batch.len(), 5);
    }
}
