//! The loops that drive transforms and sinks from their input queues.
//!
//! Each loop also watches its node's `abort` token, cancelled when a stop
//! cannot wait any longer (the grace period is over, or a second signal
//! came), and counts what it still holds as dropped ([`super::loss`]).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::component_metrics::{ComponentMetrics, DropReason};
use super::loss::{abandon, died, discard_queue, loss, Held};
use super::stack::SinkStack;
use crate::component::{BatchConfig, ComponentInfo, Transform};
use crate::edge::{InputReceiver, Output, OutputSlot, SlotGuard};
use crate::event::{BatchId, EventBatch, EventKinds};

/// Removes events of kinds the component does not accept, counting them.
pub(super) fn keep_accepted(batch: &mut EventBatch, accepts: EventKinds, metrics: &ComponentMetrics) {
    if accepts == EventKinds::ALL || batch.iter().all(|e| accepts.contains(e.kind())) {
        return;
    }
    let before = batch.len();
    batch.events_mut().retain(|e| accepts.contains(e.kind()));
    metrics
        .dropped(DropReason::UnsupportedKind)
        .increment((before - batch.len()) as u64);
}

/// Runs a transform until its input closes and is drained, or `abort`.
#[allow(clippy::too_many_arguments)] // one per part of a transform node, each distinct
pub async fn run_transform(
    info: ComponentInfo,
    mut input: InputReceiver,
    mut transform: Transform,
    mut output: Output,
    slot: Arc<OutputSlot>,
    accepts: EventKinds,
    metrics: ComponentMetrics,
    abort: CancellationToken,
) {
    let loss = loss(&metrics, &abort);
    loop {
        let queued = tokio::select! {
            biased;
            _ = abort.cancelled() => break,
            queued = input.recv() => queued,
        };
        let Some(queued) = queued else { break };
        let (mut batch, slots) = queued.into_parts();
        keep_accepted(&mut batch, accepts, &metrics);
        if batch.is_empty() {
            continue;
        }
        let held = Held::new(batch.len(), &loss.counter);
        let step = async {
            let result = match transform.ready().await {
                Ok(service) => service.call(batch).await,
                Err(error) => Err(error),
            };
            match result {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => {
                    let events = batch.len() as u64;
                    match output.pass_on(batch).await {
                        Ok(true) => {}
                        // Its consumers stopped first (an abort reached
                        // them before this task): lost, and counted.
                        Ok(false) => loss.counter.increment(events),
                        Err(error) => tracing::error!(component = %info, %error, "cannot pass batch on"),
                    }
                }
                Err(error) => tracing::error!(component = %info, %error, "transform failed, batch dropped"),
            }
        };
        tokio::select! {
            biased;
            _ = abort.cancelled() => {
                // The batch is counted as dropped here (Held), whether it
                // was in the transform or waiting for room downstream: an
                // output counts what it sent only once a consumer took it.
                let held_events = held.events;
                drop(held);
                drop(slots);
                discard_queue(&info, &mut input, &metrics, held_events, &loss).await;
                break;
            }
            outcome = AssertUnwindSafe(step).catch_unwind() => match outcome {
                Ok(()) => held.settle(),
                Err(panic) => std::panic::resume_unwind(died(&info, &mut input, &metrics, &loss, held, panic).await),
            },
        }
        drop(slots);
    }
    if abort.is_cancelled() {
        discard_queue(&info, &mut input, &metrics, 0, &loss).await;
    }
    // Let downstream queues close once this transform is done.
    slot.clear();
    tracing::debug!(component = %info, "transform finished");
}

/// Takes the next batch from `input`, merged with those that follow it
/// within `batching`'s size and time. The slots of every merged batch stay
/// taken until the call completes, so the buffer bounds what is in flight.
/// An abort ends the merging early: the batch so far is returned, for the
/// caller to count.
async fn next_batch(
    input: &mut InputReceiver,
    batching: Option<BatchConfig>,
    numbers: &mut BatchNumbers,
    abort: &CancellationToken,
) -> Option<(EventBatch, Vec<SlotGuard>)> {
    let first = tokio::select! {
        biased;
        _ = abort.cancelled() => return None,
        first = input.recv() => first?,
    };
    let (mut batch, slots) = first.into_parts();
    numbers.number(&mut batch);
    let mut guards = vec![slots];
    let Some(batching) = batching else {
        return Some((batch, guards));
    };
    let deadline = tokio::time::Instant::now() + batching.timeout;
    while batch.len() < batching.max_events {
        let more = tokio::select! {
            biased;
            _ = abort.cancelled() => break,
            more = tokio::time::timeout_at(deadline, input.recv()) => more,
        };
        match more {
            Ok(Some(queued)) => {
                let (mut more, slots) = queued.into_parts();
                numbers.number(&mut more);
                batch.append(more);
                guards.push(slots);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Some((batch, guards))
}

/// Numbers the batches a sink takes from its memory queue, so each call
/// carries a [`BatchId`] that its retries keep. The epoch is drawn when the
/// sink starts: a memory queue does not outlive it.
struct BatchNumbers {
    epoch: u64,
    next: u64,
}

impl BatchNumbers {
    fn new() -> Self {
        BatchNumbers {
            epoch: fastrand::u64(..),
            next: 0,
        }
    }

    fn number(&mut self, batch: &mut EventBatch) {
        let n = self.next;
        self.next += 1;
        batch.set_id(Some(BatchId {
            epoch: self.epoch,
            first: n,
            last: n,
        }));
    }
}

/// How a sink task runs.
pub struct SinkSettings {
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Kinds the sink accepts.
    pub accepts: EventKinds,
    /// Merging of queued batches, if any.
    pub batching: Option<BatchConfig>,
}

/// Runs a sink until its input closes and every batch is delivered or
/// dropped; or until `stop` is cancelled early: by an abort (its parent
/// token, see the module), or by the sink itself, whose context holds the
/// same token, when its destination is gone for good (a closed pipe). What
/// it still holds is then counted as dropped, `shutdown` or `output_closed`.
pub async fn run_sink(
    info: ComponentInfo,
    mut input: InputReceiver,
    mut sink: SinkStack,
    settings: SinkSettings,
    metrics: ComponentMetrics,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let SinkSettings {
        concurrency,
        accepts,
        batching,
    } = settings;
    let loss = loss(&metrics, &abort);
    let mut in_flight = JoinSet::new();
    let mut held_events = 0;
    let mut numbers = BatchNumbers::new();
    while let Some((mut batch, slots)) = next_batch(&mut input, batching, &mut numbers, &stop).await {
        keep_accepted(&mut batch, accepts, &metrics);
        if batch.is_empty() {
            continue;
        }
        let held = Held::new(batch.len(), &loss.counter);
        let ready = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            ready = sink.ready() => Some(ready),
        };
        let call = match ready {
            None => {
                held_events = held.events;
                break;
            }
            Some(Ok(service)) => service.call(batch),
            Some(Err(error)) => {
                tracing::error!(component = %info, %error, "sink is not ready, batch dropped");
                metrics.dropped(DropReason::Error).increment(batch.len() as u64);
                held.settle();
                continue;
            }
        };
        // Errors are logged and counted by the retry and instrument layers.
        if concurrency <= 1 {
            // In order, without a task per batch.
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    held_events = held.events;
                    break;
                }
                outcome = AssertUnwindSafe(call).catch_unwind() => match outcome {
                    Ok(_) => held.settle(),
                    Err(panic) => std::panic::resume_unwind(died(&info, &mut input, &metrics, &loss, held, panic).await),
                },
            }
            drop(slots);
        } else {
            let failed = metrics.dropped(DropReason::Error).clone();
            in_flight.spawn(async move {
                let outcome = AssertUnwindSafe(call).catch_unwind().await;
                // A panicking call loses its batch; the task reports the panic.
                if outcome.is_err() {
                    failed.increment(held.events);
                }
                held.settle();
                drop(slots);
                outcome.err()
            });
            let mut panicked = None;
            while let Some(joined) = in_flight.try_join_next() {
                if let Ok(Some(panic)) = joined {
                    panicked = Some(panic);
                    break;
                }
            }
            if let Some(panic) = panicked {
                abandon(&mut in_flight, &loss).await;
                let panic = died(&info, &mut input, &metrics, &loss, Held::new(0, &loss.counter), panic).await;
                std::panic::resume_unwind(panic);
            }
        }
    }
    let stopped_early = stop.is_cancelled();
    if stopped_early {
        // Each abandoned call counts its own events (Held) as it is dropped.
        in_flight.abort_all();
    }
    while let Some(joined) = in_flight.join_next().await {
        if let Ok(Some(panic)) = joined {
            abandon(&mut in_flight, &loss).await;
            let panic = died(&info, &mut input, &metrics, &loss, Held::new(0, &loss.counter), panic).await;
            std::panic::resume_unwind(panic);
        }
    }
    if stopped_early {
        discard_queue(&info, &mut input, &metrics, held_events, &loss).await;
    }
    metrics.buffer_events.set(0.0);
    stop.cancel();
    tracing::debug!(component = %info, "sink finished");
}
