//! The loops that drive transforms and sinks from their input queues.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::component_metrics::{ComponentMetrics, DropReason};
use super::stack::SinkStack;
use crate::component::{BatchConfig, ComponentInfo, Transform};
use crate::edge::{InputReceiver, Output, OutputSlot, SlotGuard};
use crate::event::{EventBatch, EventKinds};

/// Removes events of kinds the component does not accept, counting them.
fn keep_accepted(batch: &mut EventBatch, accepts: EventKinds, metrics: &ComponentMetrics) {
    if accepts == EventKinds::ALL || batch.iter().all(|e| accepts.contains(e.kind())) {
        return;
    }
    let before = batch.len();
    batch.events_mut().retain(|e| accepts.contains(e.kind()));
    metrics
        .dropped(DropReason::UnsupportedKind)
        .increment((before - batch.len()) as u64);
}

/// Runs a transform until its input closes and is drained.
pub async fn run_transform(
    info: ComponentInfo,
    mut input: InputReceiver,
    mut transform: Transform,
    mut output: Output,
    slot: Arc<OutputSlot>,
    accepts: EventKinds,
    metrics: ComponentMetrics,
) {
    while let Some(queued) = input.recv().await {
        metrics.buffer_events.set(input.queued_events() as f64);
        let (mut batch, slots) = queued.into_parts();
        keep_accepted(&mut batch, accepts, &metrics);
        if batch.is_empty() {
            continue;
        }
        let result = match transform.ready().await {
            Ok(service) => service.call(batch).await,
            Err(error) => Err(error),
        };
        drop(slots);
        match result {
            Ok(batch) if batch.is_empty() => {}
            Ok(batch) => {
                if let Err(error) = output.send(batch).await {
                    tracing::error!(component = %info, %error, "cannot pass batch on");
                }
            }
            Err(error) => tracing::error!(component = %info, %error, "transform failed, batch dropped"),
        }
    }
    // Let downstream queues close once this transform is done.
    slot.clear();
    tracing::debug!(component = %info, "transform finished");
}

/// Takes the next batch from `input`, merged with those that follow it
/// within `batching`'s size and time. The slots of every merged batch stay
/// taken until the call completes, so the buffer bounds what is in flight.
async fn next_batch(input: &mut InputReceiver, batching: Option<BatchConfig>) -> Option<(EventBatch, Vec<SlotGuard>)> {
    let (mut batch, slots) = input.recv().await?.into_parts();
    let mut guards = vec![slots];
    let Some(batching) = batching else {
        return Some((batch, guards));
    };
    let deadline = tokio::time::Instant::now() + batching.timeout;
    while batch.len() < batching.max_events {
        match tokio::time::timeout_at(deadline, input.recv()).await {
            Ok(Some(queued)) => {
                let (more, slots) = queued.into_parts();
                if batch.is_empty() {
                    batch = more;
                } else {
                    batch.events_mut().extend(more.into_events());
                }
                guards.push(slots);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Some((batch, guards))
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

/// Runs a sink until its input closes and every batch is delivered or dropped.
pub async fn run_sink(
    info: ComponentInfo,
    mut input: InputReceiver,
    mut sink: SinkStack,
    settings: SinkSettings,
    metrics: ComponentMetrics,
    done: CancellationToken,
) {
    let SinkSettings {
        concurrency,
        accepts,
        batching,
    } = settings;
    let mut in_flight = JoinSet::new();
    while let Some((mut batch, slots)) = next_batch(&mut input, batching).await {
        metrics.buffer_events.set(input.queued_events() as f64);
        keep_accepted(&mut batch, accepts, &metrics);
        if batch.is_empty() {
            continue;
        }
        let call = match sink.ready().await {
            Ok(service) => service.call(batch),
            Err(error) => {
                tracing::error!(component = %info, %error, "sink is not ready, batch dropped");
                metrics.dropped(DropReason::Error).increment(batch.len() as u64);
                continue;
            }
        };
        // Errors are logged and counted by the retry and instrument layers.
        if concurrency <= 1 {
            // In order, without a task per batch.
            let _ = call.await;
            drop(slots);
        } else {
            in_flight.spawn(async move {
                let _ = call.await;
                drop(slots);
            });
            while in_flight.try_join_next().is_some() {}
        }
    }
    while in_flight.join_next().await.is_some() {}
    metrics.buffer_events.set(0.0);
    done.cancel();
    tracing::debug!(component = %info, "sink finished");
}
