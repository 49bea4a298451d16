//! [`Output`]: where a source or transform pushes its batches — a tower
//! `Service` that fans each batch out to every consumer's input queue.
//!
//! `poll_ready` is ready only when every consumer can take a batch, so a
//! full `block` queue anywhere downstream holds the producer back. The list
//! of consumers lives in a shared [`OutputSlot`] that a reload swaps; each
//! `Output` notices the change at its next `poll_ready`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use metrics::Counter;
use tower::{BoxError, Service};

use super::queue::{InputSender, QueueClosed};
use super::tap::TapPoint;
use crate::event::EventBatch;

/// The current consumers of one producer.
#[derive(Debug, Default)]
pub struct OutputSlot {
    targets: ArcSwap<Vec<InputSender>>,
    version: AtomicU64,
    /// Where `sonde tap` reads what leaves the component; set once, when
    /// the topology wires the component.
    tap: std::sync::OnceLock<Arc<TapPoint>>,
}

impl OutputSlot {
    /// A slot with no consumers yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the consumers.
    pub fn set(&self, targets: Vec<InputSender>) {
        self.targets.store(Arc::new(targets));
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Drops every consumer, letting their queues close.
    pub fn clear(&self) {
        self.set(Vec::new());
    }

    /// Gives the slot its component's tap point (the first one given stays).
    pub fn set_tap(&self, tap: Arc<TapPoint>) {
        let _ = self.tap.set(tap);
    }
}

/// Pushes batches to the consumers of one component.
pub struct Output {
    slot: Arc<OutputSlot>,
    version: u64,
    targets: Vec<InputSender>,
    sent_events: Counter,
    sent_batches: Counter,
}

impl Output {
    /// An output over `slot`, counting what it sends.
    pub fn new(slot: Arc<OutputSlot>, sent_events: Counter, sent_batches: Counter) -> Self {
        Output {
            slot,
            version: u64::MAX,
            targets: Vec::new(),
            sent_events,
            sent_batches,
        }
    }

    /// An output whose batches go nowhere (tests, benchmarks of a lone source).
    pub fn detached() -> Self {
        Self::new(OutputSlot::new(), Counter::noop(), Counter::noop())
    }

    fn refresh(&mut self) {
        let version = self.slot.version.load(Ordering::Acquire);
        if version != self.version {
            self.targets = self.slot.targets.load().iter().cloned().collect();
            self.version = version;
        }
    }

    /// Waits until the consumers can take a batch, then sends it.
    pub async fn send(&mut self, batch: EventBatch) -> Result<(), BoxError> {
        futures::future::poll_fn(|cx| self.poll_ready(cx)).await?;
        self.call(batch).await
    }

    /// [`Output::send`] for a transform, which must account for what it
    /// accepted: whether a consumer took the batch (false when every one
    /// had stopped, so the caller counts the batch as lost).
    pub async fn pass_on(&mut self, batch: EventBatch) -> Result<bool, BoxError> {
        futures::future::poll_fn(|cx| self.poll_ready(cx)).await?;
        Ok(self.deliver(batch).await)
    }

    /// Sends `batch` to every consumer; true when one took it (or there is
    /// none to take it).
    fn deliver(&mut self, batch: EventBatch) -> BoxFuture<'static, bool> {
        let events = batch.len() as u64;
        if events == 0 {
            return Box::pin(async { true });
        }
        if let Some(tap) = self.slot.tap.get() {
            tap.offer(&batch);
        }
        // Counted once a consumer has taken the batch (or counted it as
        // dropped, `drop_newest`), not before: a batch still waiting for
        // room when a stop cannot wait was never accepted, and counting it
        // as sent would leave events that no consumer accounts for.
        let sent_events = self.sent_events.clone();
        let sent_batches = self.sent_batches.clone();
        let count = move |taken: bool| {
            if taken {
                sent_events.increment(events);
                sent_batches.increment(1);
            }
            taken
        };
        match self.targets.len() {
            0 => Box::pin(async move { count(true) }),
            1 => {
                let send = self.targets[0].send(batch);
                Box::pin(async move { count(send.await.is_ok()) })
            }
            _ => {
                // Each consumer gets the same shared batch: an atomic increment, not a copy.
                let sends: Vec<_> = self.targets.iter_mut().map(|t| t.send(batch.clone())).collect();
                Box::pin(async move {
                    let results = futures::future::join_all(sends).await;
                    count(results.iter().any(Result::is_ok))
                })
            }
        }
    }
}

impl Service<EventBatch> for Output {
    type Response = ();
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<(), BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.refresh();
        let mut pending = false;
        for target in &mut self.targets {
            match target.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {}
                // A consumer that stopped (removed by a reload) just stops receiving.
                Poll::Ready(Err(QueueClosed)) => {}
                Poll::Pending => pending = true,
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, batch: EventBatch) -> Self::Future {
        // A consumer that stopped (removed by a reload) just stops receiving.
        let delivery = self.deliver(batch);
        Box::pin(async move {
            delivery.await;
            Ok(())
        })
    }
}
