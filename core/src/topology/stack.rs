//! The one place where the configurable layers are stacked around a sink.
//!
//! Outermost first, and why in this order (Vector's, for the same reasons):
//! 1. instrument — sees each batch once, with its final outcome after retries;
//! 2. rate limit — limits batches leaving the agent, retries included in
//!    the concurrency slot they hold;
//! 3. concurrency limit — a retried batch keeps its slot while it waits,
//!    so an outage cannot multiply in-flight requests;
//! 4. retry — repeats only the attempt, each under its own timeout;
//! 5. timeout — bounds one attempt; its expiry is retriable.

use tower::limit::{ConcurrencyLimitLayer, RateLimitLayer};
use tower::util::BoxService;
use tower::{ServiceBuilder, ServiceExt};

use super::component_metrics::ComponentMetrics;
use super::instrument::InstrumentLayer;
use super::retry::RetryPolicy;
use crate::component::{BoxError, ComponentInfo, RequestConfig, Sink, Transform};
use crate::event::EventBatch;

/// A sink with all its layers, as the sink task drives it.
pub type SinkStack = BoxService<EventBatch, (), BoxError>;

/// Wraps `sink` in the layers its `request` block configures.
pub fn sink_stack(sink: Sink, info: &ComponentInfo, request: &RequestConfig, metrics: &ComponentMetrics) -> SinkStack {
    let policy = RetryPolicy::new(info.clone(), request, metrics.errors.clone());
    let rate_limit = (request.rate_limit_per_second > 0)
        .then(|| RateLimitLayer::new(request.rate_limit_per_second, std::time::Duration::from_secs(1)));
    let service = ServiceBuilder::new()
        .layer(InstrumentLayer::new(metrics.clone(), true))
        .option_layer(rate_limit)
        .layer(ConcurrencyLimitLayer::new(request.concurrency.max(1)))
        .retry(policy)
        .timeout(request.timeout)
        .service(sink.map_err(BoxError::from));
    BoxService::new(service.map_err(|e: BoxError| e))
}

/// Wraps `transform` in the instrumentation layer.
pub fn transform_stack(transform: Transform, metrics: &ComponentMetrics) -> Transform {
    BoxService::new(
        ServiceBuilder::new()
            .layer(InstrumentLayer::new(metrics.clone(), false))
            .service(transform),
    )
}
