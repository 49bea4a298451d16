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

/// Subsystems whose name has an underscore, so that `sonde_pod_enrich_x`
/// becomes `sonde.pod_enrich.x`, not `sonde.pod.enrich_x`.
const SUBSYSTEMS: [&str; 3] = ["pod_enrich", "file_access", "service_graph"];

/// The OpenTelemetry name and UCUM unit of an agent metric, whose name
/// (kept for the API's `/metrics`) follows Prometheus' rules:
/// `sonde_component_call_duration_seconds` → `sonde.component.call_duration`
/// in `s`; a counter's `_total` goes. The Prometheus sink turns them back
/// into the same name, so a scrape of either reads alike.
pub fn otel_name(name: &str, counter: bool) -> (String, Option<&'static str>) {
    let mut base = name;
    if counter {
        base = base.strip_suffix("_total").unwrap_or(base);
    }
    let mut unit = None;
    for (suffix, ucum) in [("_seconds", "s"), ("_bytes", "By")] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            base = stripped;
            unit = Some(ucum);
            break;
        }
    }
    let Some(rest) = base.strip_prefix("sonde_") else {
        return (base.to_string(), unit);
    };
    let subsystem = SUBSYSTEMS
        .iter()
        .find(|s| {
            rest.strip_prefix(**s)
                .is_some_and(|r| r.is_empty() || r.starts_with('_'))
        })
        .map(|s| s.len())
        .or_else(|| rest.find('_'));
    match subsystem {
        Some(end) if end < rest.len() => (format!("sonde.{}.{}", &rest[..end], &rest[end + 1..]), unit),
        _ => (format!("sonde.{rest}"), unit),
    }
}

/// Turns one agent metric into an event.
pub fn to_event(metric: InternalMetric, node: &SharedStr, now: Timestamp) -> Event {
    let mut attributes: Attributes = metric.labels.into_iter().collect();
    attributes.insert(keys::node(), node.clone());
    let (name, unit) = otel_name(&metric.name, matches!(metric.value, InternalValue::Counter(_)));
    let name = SharedStr::from(name);
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
    let mut event = event.with_attributes(attributes).with_timestamp(now);
    if let Some(unit) = unit {
        event = event.with_unit(unit);
    }
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

#[cfg(test)]
mod tests {
    use super::otel_name;

    #[test]
    fn agent_names_become_dotted_with_their_unit() {
        let cases = [
            (
                "sonde_component_sent_events_total",
                true,
                "sonde.component.sent_events",
                None,
            ),
            (
                "sonde_component_call_duration_seconds",
                false,
                "sonde.component.call_duration",
                Some("s"),
            ),
            ("sonde_buffer_max_bytes", false, "sonde.buffer.max", Some("By")),
            ("sonde_buffer_bytes", false, "sonde.buffer", Some("By")),
            (
                "sonde_pod_enrich_cache_hits_total",
                true,
                "sonde.pod_enrich.cache_hits",
                None,
            ),
            ("sonde_ebpf_lost_events_total", true, "sonde.ebpf.lost_events", None),
            ("sonde_prometheus_series", false, "sonde.prometheus.series", None),
            ("other_total", false, "other_total", None),
        ];
        for (name, counter, otel, unit) in cases {
            assert_eq!(otel_name(name, counter), (otel.to_string(), unit), "{name}");
        }
    }
}
