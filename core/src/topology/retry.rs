//! Retry with exponential backoff for the errors a sink calls retriable.
//!
//! Sinks only classify failures ([`SinkError`]); this policy decides when
//! and how often to try again, the same for every sink. By default it
//! retries until shutdown: while the agent runs, a retriable outage costs
//! latency, not data (the batch waits here and the sink's buffer fills,
//! which blocks upstream); what is still waiting when the agent stops is
//! dropped and counted (`reason="shutdown"`, see `tasks`).

use std::time::Duration;

use futures::future::BoxFuture;
use metrics::Counter;
use tower::retry::Policy;

use crate::component::{BoxError, ComponentInfo, RequestConfig, SinkError};
use crate::event::EventBatch;

/// The longest `Retry-After` honoured; a server asking for more is capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Retry policy of one sink; cloned per batch, so `attempt` is per batch.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    info: ComponentInfo,
    initial: Duration,
    max: Duration,
    max_attempts: u32,
    attempt: u32,
    errors: Counter,
}

impl RetryPolicy {
    /// A policy from a sink's `request` settings, counting failed attempts in `errors`.
    pub fn new(info: ComponentInfo, request: &RequestConfig, errors: Counter) -> Self {
        RetryPolicy {
            info,
            initial: request.retry_initial_backoff,
            max: request.retry_max_backoff.max(request.retry_initial_backoff),
            max_attempts: request.retry_max_attempts,
            attempt: 0,
            errors,
        }
    }

    /// Delay before retry number `attempt` (from 1): `initial · 2^(attempt-1)`,
    /// capped at `max`, then scaled by a random factor in [0.5, 1) so that
    /// many agents hitting one recovering server do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self.initial.saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20));
        exponential.min(self.max).mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Whether `error` is worth another attempt, and after how long at least.
pub fn classify(error: &BoxError) -> Option<Option<Duration>> {
    if let Some(sink_error) = error.downcast_ref::<SinkError>() {
        return match sink_error {
            SinkError::Retriable { retry_after, .. } => Some(*retry_after),
            SinkError::Permanent { .. } | SinkError::Rejected { .. } => None,
        };
    }
    if error.is::<tower::timeout::error::Elapsed>() {
        return Some(None);
    }
    None
}

impl Policy<EventBatch, (), BoxError> for RetryPolicy {
    type Future = BoxFuture<'static, ()>;

    fn retry(&mut self, batch: &mut EventBatch, result: &mut Result<(), BoxError>) -> Option<Self::Future> {
        let error = result.as_ref().err()?;
        // A partial success is no failed attempt: the sink logged it, the
        // instrument layer counts what was refused.
        if matches!(error.downcast_ref::<SinkError>(), Some(SinkError::Rejected { .. })) {
            return None;
        }
        self.errors.increment(1);
        self.attempt += 1;
        let Some(retry_after) = classify(error) else {
            tracing::error!(component = %self.info, events = batch.len(), %error, "sink failed permanently, batch dropped");
            return None;
        };
        if self.max_attempts != 0 && self.attempt >= self.max_attempts {
            tracing::error!(component = %self.info, events = batch.len(), attempts = self.attempt, %error, "retries exhausted, batch dropped");
            return None;
        }
        let delay = match retry_after {
            Some(wanted) => wanted.min(MAX_RETRY_AFTER),
            None => self.backoff(self.attempt),
        };
        tracing::warn!(component = %self.info, attempt = self.attempt, delay = ?delay, %error, "sink failed, retrying");
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, batch: &EventBatch) -> Option<EventBatch> {
        // A shared batch: cloning is a reference-count increment.
        Some(batch.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::ComponentKind;

    fn policy() -> RetryPolicy {
        let info = ComponentInfo {
            kind: ComponentKind::Sink,
            id: "s".into(),
            type_name: "test",
        };
        let request = RequestConfig {
            retry_initial_backoff: Duration::from_millis(100),
            retry_max_backoff: Duration::from_secs(1),
            ..RequestConfig::default()
        };
        RetryPolicy::new(info, &request, Counter::noop())
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = policy();
        for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (30, 1000)] {
            let d = p.backoff(attempt).as_millis() as u64;
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d}ms not in [{}, {full}]",
                full / 2
            );
        }
    }

    #[test]
    fn classifies_errors() {
        let retriable: BoxError = Box::new(SinkError::retriable("503"));
        let permanent: BoxError = Box::new(SinkError::permanent("400"));
        let other: BoxError = "boom".into();
        assert_eq!(classify(&retriable), Some(None));
        assert_eq!(classify(&permanent), None);
        assert_eq!(classify(&other), None);
        let timeout: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(classify(&timeout), Some(None));
    }
}
