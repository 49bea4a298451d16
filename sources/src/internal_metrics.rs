//! `source "internal_metrics"`: the agent's own metrics (events in, out and
//! dropped per component, buffer fill, call durations, eBPF losses) as
//! metric events, so they can go anywhere the pipeline goes.

use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::event::{
    keys, Attributes, Event, EventBatch, EventKinds, Histogram, Metric, SharedStr, Temporality, Timestamp,
};
use sonde_core::telemetry::{self, InternalMetric, InternalValue};
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};
use tokio::time::MissedTickBehavior;

/// Default time between snapshots.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}

/// Emits the agent's own metrics (per-component event counts, drops,
/// buffer fill, durations) every interval.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InternalMetricsSourceConfig {
    /// Time between snapshots. Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
}

impl sonde_core::registry::SourceType for InternalMetricsSourceConfig {
    const NAME: &'static str = "internal_metrics";
}

impl SourceConfig for InternalMetricsSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::METRIC
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        Ok(Box::pin(run(self.interval, cx)))
    }
}

/// Turns one agent metric into an event.
pub fn to_event(metric: InternalMetric, node: &SharedStr, now: Timestamp) -> Event {
    let mut attributes: Attributes = metric.labels.into_iter().collect();
    attributes.insert(keys::node(), node.clone());
    let name = SharedStr::from(metric.name);
    let event = match metric.value {
        InternalValue::Counter(value) => Metric::counter(name, value as f64),
        InternalValue::Gauge(value) => Metric::gauge(name, value),
        InternalValue::Histogram {
            bounds,
            counts,
            sum,
            count,
        } => Metric::histogram(
            name,
            Histogram {
                bounds: Arc::clone(&bounds),
                counts,
                sum,
                count,
            },
            Temporality::Cumulative,
        ),
    };
    let event = event.with_attributes(attributes).with_timestamp(now);
    match metric.description {
        Some(d) => event.with_description(d).into(),
        None => event.into(),
    }
}

async fn run(interval: Duration, mut cx: SourceContext) -> Result<(), BoxError> {
    let telemetry = telemetry::install();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = cx.shutdown.cancelled() => return Ok(()),
        }
        let now = Timestamp::now();
        let batch: EventBatch = telemetry
            .snapshot()
            .into_iter()
            .map(|m| to_event(m, &cx.global.node_name, now))
            .collect();
        tokio::select! {
            result = cx.out.send(batch) => result?,
            _ = cx.shutdown.cancelled() => return Ok(()),
        }
    }
}
