//! What a task does with events it can no longer deliver: every one is
//! counted as dropped, with the reason it was lost.
//!
//! A task holds events in three places: the batch in its hands, its calls
//! in flight, its queue. When it must stop early — an abort (the grace
//! period is over, or a second signal came), its sink's destination closed
//! for good, or a panic — it counts them itself, so nothing moves while it
//! counts, and the reason is decided when they are lost: `error` once the
//! component died, `shutdown` after an abort, `output_closed` otherwise.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics::Counter;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::component_metrics::{ComponentMetrics, DropReason};
use crate::component::ComponentInfo;
use crate::edge::InputReceiver;

/// What a sink's call task returns: the panic of a call that panicked.
pub(super) type CallOutcome = Option<Box<dyn std::any::Any + Send>>;

/// Events held by a task that are neither delivered nor dropped yet: counted
/// as dropped (`shutdown`) if the guard goes before [`Held::settle`] (the
/// call was abandoned by an abort).
pub(super) struct Held {
    pub(super) events: u64,
    lost: Counter,
}

impl Held {
    pub(super) fn new(events: usize, lost: &Counter) -> Self {
        Held {
            events: events as u64,
            lost: lost.clone(),
        }
    }

    /// Their fate was counted elsewhere (sent, or dropped for an error).
    pub(super) fn settle(mut self) {
        self.events = 0;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.lost.increment(self.events);
    }
}

/// Why a task lost what it held, decided when the events are lost (not
/// when they are taken): the component died (`error`), an abort
/// (`shutdown`), or else the sink's destination is gone (`output_closed`).
#[derive(Clone)]
pub(super) struct Loss {
    pub(super) counter: Counter,
    died: Arc<AtomicBool>,
}

pub(super) fn loss(metrics: &ComponentMetrics, abort: &CancellationToken) -> Loss {
    let died = Arc::new(AtomicBool::new(false));
    let counter = Counter::from_arc(Arc::new(LostCounter {
        abort: abort.clone(),
        died: died.clone(),
        error: metrics.dropped(DropReason::Error).clone(),
        closed: metrics.dropped(DropReason::OutputClosed).clone(),
        shutdown: metrics.dropped(DropReason::Shutdown).clone(),
    }));
    Loss { counter, died }
}

/// The counter of [`Loss`].
struct LostCounter {
    abort: CancellationToken,
    died: Arc<AtomicBool>,
    error: Counter,
    closed: Counter,
    shutdown: Counter,
}

impl LostCounter {
    fn target(&self) -> &Counter {
        if self.died.load(Ordering::Acquire) {
            &self.error
        } else if self.abort.is_cancelled() {
            &self.shutdown
        } else {
            &self.closed
        }
    }
}

impl metrics::CounterFn for LostCounter {
    fn increment(&self, value: u64) {
        self.target().increment(value)
    }
    fn absolute(&self, value: u64) {
        self.target().absolute(value)
    }
}

/// Counts what is left in `input` as dropped by an early stop, and logs it.
pub(super) async fn discard_queue(
    info: &ComponentInfo,
    input: &mut InputReceiver,
    metrics: &ComponentMetrics,
    held: u64,
    loss: &Loss,
) {
    let queued = input.close_and_discard().await;
    loss.counter.increment(queued);
    metrics.buffer_events.set(0.0);
    let events = queued + held;
    if events > 0 {
        // Calls abandoned in flight (concurrency above 1) count themselves
        // in the metric and are not in this figure.
        tracing::error!(component = %info, events, "stopped before delivering them: events dropped");
    }
}

/// A transform or sink panicked with `held` in its hands: that batch, its
/// queue and its other calls in flight are lost (`reason="error"`), counted
/// while they are still here (unwinding would drop them uncounted), and the
/// queue is closed so producers stop waiting for it. The panic then goes
/// on, to be reported as the component's failure (`running`): the caller
/// resumes it.
pub(super) async fn died(
    info: &ComponentInfo,
    input: &mut InputReceiver,
    metrics: &ComponentMetrics,
    loss: &Loss,
    held: Held,
    panic: Box<dyn std::any::Any + Send>,
) -> Box<dyn std::any::Any + Send> {
    // From now on what is lost is lost to the failure.
    loss.died.store(true, Ordering::Release);
    let queued = input.close_and_discard().await;
    let events = held.events + queued;
    metrics.dropped(DropReason::Error).increment(events);
    held.settle();
    metrics.buffer_events.set(0.0);
    tracing::error!(component = %info, events, "component panicked: the events it held are dropped");
    panic
}

/// Abandons a sink's calls in flight after one panicked, and waits until
/// each has counted its events as lost to the failure (an aborted task's
/// future is dropped later, by the runtime, not by `abort`).
pub(super) async fn abandon(in_flight: &mut JoinSet<CallOutcome>, loss: &Loss) {
    loss.died.store(true, Ordering::Release);
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
}
