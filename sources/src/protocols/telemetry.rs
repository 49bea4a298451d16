//! The engine's own counters (`sonde_protocols_*`: gaps, drops, memory,
//! connections) go to the agent's internal metrics (its API's `/metrics`,
//! beside `sonde_ebpf_lost_events_total`), not into the pipeline: they
//! describe the agent, and a Prometheus sink would otherwise show them a
//! second time.

use metrics::Label;
use sonde_core::event::{Metric, MetricValue, Value};

use super::engine::counters::REASON;

/// Exports the `sonde_protocols_*` metrics of `metrics` with the component's
/// `labels` (their reason as `reason`); returns the others (RED metrics,
/// service graph) for the pipeline.
pub fn export_own(metrics: Vec<Metric>, labels: &[Label]) -> Vec<Metric> {
    let mut pipeline = Vec::with_capacity(metrics.len());
    for metric in metrics {
        if !metric.name.starts_with("sonde_protocols_") {
            pipeline.push(metric);
            continue;
        }
        let mut labels = labels.to_vec();
        if let Some(Value::Str(reason)) = metric.attributes.get(REASON) {
            labels.push(Label::new("reason", reason.to_string()));
        }
        let name = metric.name.to_string();
        match metric.value {
            MetricValue::Counter { value } => metrics::counter!(name, labels).absolute(value as u64),
            MetricValue::Gauge { value } => metrics::gauge!(name, labels).set(value),
            MetricValue::Histogram(_) => {}
        }
    }
    pipeline
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_core::event::Attributes;

    #[test]
    fn own_counters_leave_the_pipeline_and_red_metrics_stay() {
        let own = Metric::counter("sonde_protocols_gaps_total", 3.0)
            .with_attributes(Attributes::new().with(REASON, "uncaptured"));
        let red = Metric::gauge("http.server.request.duration", 1.0);
        let kept = export_own(vec![own, red], &[Label::new("component_id", "l7")]);
        let names: Vec<&str> = kept.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["http.server.request.duration"]);
    }
}
