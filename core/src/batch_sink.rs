//! [`BatchSink`]: what a sink type implements (what sending one batch
//! means), and [`batch_sink`], which makes the topology's [`Sink`] of it.
//!
//! The topology drives sinks as tower services, but no sink needs tower's
//! generality: every sink is always ready (backpressure is the queue before
//! it, and batches in flight are bounded by the core's concurrency layer),
//! and the service is cloned only so that the retry and concurrency layers
//! can call it again and at once. So tower's `Service` is implemented here,
//! once, for every sink: the sink sits behind an `Arc` that all clones of
//! the service share, and its future is boxed. A sink only says what sending
//! a batch means and classifies its failures as [`SinkError::Retriable`] or
//! [`SinkError::Permanent`]; retries, backoff, timeouts and concurrency stay
//! in the core's layers, the same for every sink.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::util::BoxCloneService;
use tower::Service;

use crate::component::{Sink, SinkError};
use crate::event::EventBatch;

/// A sink type's behaviour: sending one batch.
///
/// `send` takes `&self` because one sink serves every call: the retry layer
/// calls again while the concurrency layer may have other batches in
/// flight, all on clones of one service that share this value. State that
/// changes per batch lives behind a lock or an atomic.
pub trait BatchSink: Send + Sync + 'static {
    /// Sends `batch`. An error says whether trying the same batch again may
    /// succeed; the core decides whether and when to (`request { }`).
    ///
    /// Implement it as `async fn send(&self, batch: EventBatch) -> Result<(), SinkError>`.
    /// The work starts when the core first polls the future, not before.
    fn send(&self, batch: EventBatch) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Makes the [`Sink`] service of `sink`: its clones share `sink`.
pub fn batch_sink(sink: impl BatchSink) -> Sink {
    BoxCloneService::new(BatchSinkService(Arc::new(sink)))
}

/// The one `Service` of every [`BatchSink`].
struct BatchSinkService<S>(Arc<S>);

// Not derived: that would require `S: Clone`, and cloning the service must
// share the sink, not copy it.
impl<S> Clone for BatchSinkService<S> {
    fn clone(&self) -> Self {
        BatchSinkService(self.0.clone())
    }
}

impl<S: BatchSink> Service<EventBatch> for BatchSinkService<S> {
    type Response = ();
    type Error = SinkError;
    type Future = BoxFuture<'static, Result<(), SinkError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: EventBatch) -> Self::Future {
        // The future borrows the sink, so it owns a reference to it: the
        // topology may drop the service before the batch is delivered.
        let sink = self.0.clone();
        Box::pin(async move { sink.send(batch).await })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tower::ServiceExt;

    use super::*;
    use crate::event::{Event, Log};

    fn batch(events: usize) -> EventBatch {
        (0..events).map(|_| Event::from(Log::new("x"))).collect()
    }

    /// Accepts one batch, then refuses every other: only a sink shared by
    /// every clone of the service sees the second call.
    #[derive(Default)]
    struct Once {
        used: AtomicBool,
    }

    impl BatchSink for Once {
        async fn send(&self, _: EventBatch) -> Result<(), SinkError> {
            if self.used.swap(true, Ordering::SeqCst) {
                return Err(SinkError::permanent("used"));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn clones_of_the_service_share_the_sink() {
        let sink = batch_sink(Once::default());
        let clone = sink.clone();
        sink.oneshot(batch(3)).await.unwrap();
        let error = clone.oneshot(batch(1)).await.unwrap_err();
        assert_eq!(error.to_string(), "used");
    }

    /// Fails with what it is given, every time.
    struct Failing(fn() -> SinkError);

    impl BatchSink for Failing {
        async fn send(&self, _: EventBatch) -> Result<(), SinkError> {
            Err((self.0)())
        }
    }

    #[tokio::test]
    async fn errors_pass_through_unchanged() {
        let retriable = || SinkError::Retriable {
            source: "503 unavailable".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        match batch_sink(Failing(retriable)).oneshot(batch(1)).await {
            Err(SinkError::Retriable { source, retry_after }) => {
                assert_eq!(source.to_string(), "503 unavailable");
                assert_eq!(retry_after, Some(Duration::from_secs(7)));
            }
            other => panic!("expected the retriable error, got {other:?}"),
        }
        let permanent = || SinkError::permanent("400 bad request");
        match batch_sink(Failing(permanent)).oneshot(batch(1)).await {
            Err(SinkError::Permanent { source }) => assert_eq!(source.to_string(), "400 bad request"),
            other => panic!("expected the permanent error, got {other:?}"),
        }
    }

    /// Returns only once `n` calls are in flight together.
    struct Rendezvous(tokio::sync::Barrier);

    impl BatchSink for Rendezvous {
        async fn send(&self, _: EventBatch) -> Result<(), SinkError> {
            self.0.wait().await;
            Ok(())
        }
    }

    #[tokio::test]
    async fn calls_run_concurrently_on_one_sink() {
        // As the concurrency layer does: several calls of clones in flight.
        let sink = batch_sink(Rendezvous(tokio::sync::Barrier::new(3)));
        let calls = (0..3).map(|_| sink.clone().oneshot(batch(1)));
        let results = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(calls))
            .await
            .expect("the calls meet");
        assert!(results.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn the_future_outlives_the_service() {
        let mut sink = batch_sink(Once::default());
        let call = sink.ready().await.unwrap().call(batch(2));
        drop(sink);
        call.await.unwrap();
    }
}
