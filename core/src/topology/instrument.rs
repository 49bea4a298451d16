//! [`Instrument`]: the outermost layer of every transform and sink, counting
//! events in, out and dropped, errors, and time spent per call.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::component_metrics::{ComponentMetrics, DropReason};
use crate::component::{BoxError, SinkError};
use crate::event::EventBatch;

/// Layer form of [`Instrument`].
#[derive(Clone, Debug)]
pub struct InstrumentLayer {
    metrics: ComponentMetrics,
    /// Count delivered events as sent (sinks); transforms count through their `Output`.
    count_sent: bool,
}

impl InstrumentLayer {
    /// A layer recording into `metrics`; `count_sent` for sinks.
    pub fn new(metrics: ComponentMetrics, count_sent: bool) -> Self {
        InstrumentLayer { metrics, count_sent }
    }
}

impl<S> Layer<S> for InstrumentLayer {
    type Service = Instrument<S>;
    fn layer(&self, inner: S) -> Instrument<S> {
        Instrument {
            inner,
            metrics: self.metrics.clone(),
            count_sent: self.count_sent,
        }
    }
}

/// Counts what passes through the wrapped service.
#[derive(Clone, Debug)]
pub struct Instrument<S> {
    inner: S,
    metrics: ComponentMetrics,
    count_sent: bool,
}

impl<S, R> Service<EventBatch> for Instrument<S>
where
    S: Service<EventBatch, Response = R>,
    S::Error: AsDynError,
{
    type Response = R;
    type Error = S::Error;
    type Future = InstrumentFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, batch: EventBatch) -> Self::Future {
        let events = batch.len() as u64;
        self.metrics.received_events.increment(events);
        self.metrics.received_batches.increment(1);
        InstrumentFuture {
            inner: self.inner.call(batch),
            started: Instant::now(),
            events,
            metrics: self.metrics.clone(),
            count_sent: self.count_sent,
        }
    }
}

pin_project! {
    /// Response future of [`Instrument`].
    pub struct InstrumentFuture<F> {
        #[pin]
        inner: F,
        started: Instant,
        events: u64,
        metrics: ComponentMetrics,
        count_sent: bool,
    }
}

/// The events a partial success refused, when `error` is one.
fn rejected(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    match error.downcast_ref::<SinkError>() {
        Some(SinkError::Rejected { rejected, .. }) => Some(*rejected),
        _ => None,
    }
}

impl<F, R, E> Future for InstrumentFuture<F>
where
    F: Future<Output = Result<R, E>>,
    E: AsDynError,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        this.metrics.call_seconds.record(this.started.elapsed().as_secs_f64());
        match &result {
            Ok(_) if *this.count_sent => {
                this.metrics.sent_events.increment(*this.events);
                this.metrics.sent_batches.increment(1);
            }
            Ok(_) => {}
            Err(error) if *this.count_sent && rejected(error.as_dyn_error()).is_some() => {
                let refused = rejected(error.as_dyn_error()).unwrap_or(0).min(*this.events);
                this.metrics.sent_events.increment(*this.events - refused);
                this.metrics.sent_batches.increment(1);
                this.metrics.dropped(DropReason::Rejected).increment(refused);
            }
            Err(_) => {
                // Sinks count each failed attempt in the retry layer; a
                // transform has no retries, so its failure is counted here.
                if !*this.count_sent {
                    this.metrics.errors.increment(1);
                }
                this.metrics.dropped(DropReason::Error).increment(*this.events);
            }
        }
        Poll::Ready(result)
    }
}

/// Errors the instrument layer can look into (a partial success is an
/// error value that still delivered most of its batch).
pub trait AsDynError {
    /// The error as a trait object.
    fn as_dyn_error(&self) -> &(dyn std::error::Error + 'static);
}

impl AsDynError for BoxError {
    fn as_dyn_error(&self) -> &(dyn std::error::Error + 'static) {
        &**self
    }
}
