//! A sink with a disk buffer (`buffer { type = "disk" }`): two loops over
//! one [`DiskQueue`].
//!
//! - The **writer** takes batches from the sink's input queue (a small
//!   memory queue, so wiring and backpressure are those of every sink) and
//!   appends them to the disk buffer, waiting while it is full or the disk
//!   refuses (`block`) or dropping and counting (`drop_newest`).
//! - The **reader** takes records from the buffer, merges them into batches
//!   (`batch { }`), calls the sink's stack and acknowledges the records once
//!   the call has returned: delivered, or dropped and counted by the core
//!   (permanent error, retries exhausted, rejected by the backend). Only
//!   then does the buffer free them.
//!
//! A stop that cannot wait (abort) leaves every record not acknowledged in
//! the buffer, delivered by the next run: they are neither sent nor
//! dropped, and `sonde_buffer_events` shows them. What the writer had not
//! yet written (its input queue) is lost and counted as for any sink.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::component_metrics::{ComponentMetrics, DropReason};
use super::loss::{discard_queue, loss};
use super::stack::SinkStack;
use super::tasks::{keep_accepted, SinkSettings};
use crate::buffer::{DiskQueue, Pushed, Writer};
use crate::component::{BatchConfig, ComponentInfo};
use crate::edge::{InputReceiver, WhenFull};
use crate::event::EventBatch;

/// Runs a disk-buffered sink until its input closes and the buffer is
/// drained, or until `stop`.
#[allow(clippy::too_many_arguments)] // one per part of a sink node, each distinct
pub async fn run_disk_sink(
    info: ComponentInfo,
    input: InputReceiver,
    queue: Arc<DiskQueue>,
    when_full: WhenFull,
    sink: SinkStack,
    settings: SinkSettings,
    metrics: ComponentMetrics,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let writer = queue.writer();
    let done = writer.done_flag();
    let write = write_loop(&info, input, writer, when_full, &metrics, &stop, &abort);
    let read = read_loop(&info, &queue, &done, sink, settings, &metrics, &stop);
    futures::future::join(write, read).await;
    queue.sync().await;
    let left = queue.unacked_events();
    if left > 0 && stop.is_cancelled() {
        tracing::warn!(component = %info, events = left, "stopped with events in its disk buffer: the next run delivers them");
    }
    metrics.buffer_events.set(0.0);
    stop.cancel();
    tracing::debug!(component = %info, "sink finished");
}

/// Input queue → disk, until the input closes or `stop` (an abort, or
/// the sink's destination gone for good).
async fn write_loop(
    info: &ComponentInfo,
    mut input: InputReceiver,
    writer: Writer,
    when_full: WhenFull,
    metrics: &ComponentMetrics,
    stop: &CancellationToken,
    abort: &CancellationToken,
) {
    let loss = loss(metrics, abort);
    let mut held = 0;
    loop {
        let queued = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            queued = input.recv() => queued,
        };
        let Some(queued) = queued else { break };
        let (batch, slots) = queued.into_parts();
        let pushed = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            pushed = writer.queue().push(&batch, when_full) => Some(pushed),
        };
        match pushed {
            Some(Pushed::Written) => {}
            Some(Pushed::Dropped) => metrics.dropped(DropReason::BufferFull).increment(batch.len() as u64),
            None => {
                held = batch.len() as u64;
                loss.counter.increment(held);
                break;
            }
        }
        drop(slots);
    }
    if stop.is_cancelled() {
        discard_queue(info, &mut input, metrics, held, &loss).await;
    }
    // Dropping the writer tells the reader that no more input comes.
    drop(writer);
}

/// The next records merged within `batching`'s size and time; `None` once
/// the buffer is drained and its writer done, or at `stop`.
async fn next_batch(
    queue: &DiskQueue,
    done: &AtomicBool,
    batching: Option<BatchConfig>,
    stop: &CancellationToken,
) -> Option<(EventBatch, Vec<u64>)> {
    let first = tokio::select! {
        biased;
        _ = stop.cancelled() => return None,
        first = queue.pop(done) => first?,
    };
    let mut batch = first.batch;
    let mut tickets = vec![first.ticket];
    let Some(batching) = batching else {
        return Some((batch, tickets));
    };
    let deadline = tokio::time::Instant::now() + batching.timeout;
    while batch.len() < batching.max_events {
        let more = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            more = tokio::time::timeout_at(deadline, queue.pop(done)) => more,
        };
        match more {
            Ok(Some(record)) => {
                batch.append(record.batch);
                tickets.push(record.ticket);
            }
            Ok(None) | Err(_) => break,
        }
    }
    Some((batch, tickets))
}

/// Disk → the sink, acknowledging what each call settled.
async fn read_loop(
    info: &ComponentInfo,
    queue: &Arc<DiskQueue>,
    done: &AtomicBool,
    mut sink: SinkStack,
    settings: SinkSettings,
    metrics: &ComponentMetrics,
    stop: &CancellationToken,
) {
    let SinkSettings {
        concurrency,
        accepts,
        batching,
    } = settings;
    let mut in_flight = JoinSet::new();
    while let Some((mut batch, tickets)) = next_batch(queue, done, batching, stop).await {
        keep_accepted(&mut batch, accepts, metrics);
        if batch.is_empty() {
            queue.ack(tickets);
            continue;
        }
        let ready = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            ready = sink.ready() => ready,
        };
        let call = match ready {
            Ok(service) => service.call(batch),
            Err(error) => {
                tracing::error!(component = %info, %error, "sink is not ready, batch dropped");
                metrics.dropped(DropReason::Error).increment(batch.len() as u64);
                queue.ack(tickets);
                continue;
            }
        };
        // The call's outcome (delivered, or dropped and counted by the
        // retry and instrument layers) settles the records; a panic does
        // not: they stay for the next run.
        if concurrency <= 1 {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                outcome = AssertUnwindSafe(call).catch_unwind() => match outcome {
                    Ok(_) => queue.ack(tickets),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
            }
        } else {
            let queue = queue.clone();
            in_flight.spawn(async move {
                let outcome = AssertUnwindSafe(call).catch_unwind().await;
                if outcome.is_ok() {
                    queue.ack(tickets);
                }
                outcome.err()
            });
            while let Some(joined) = in_flight.try_join_next() {
                if let Ok(Some(panic)) = joined {
                    in_flight.abort_all();
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
    if stop.is_cancelled() {
        in_flight.abort_all();
    }
    while let Some(joined) = in_flight.join_next().await {
        if let Ok(Some(panic)) = joined {
            in_flight.abort_all();
            std::panic::resume_unwind(panic);
        }
    }
}
