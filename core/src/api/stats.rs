//! `/stats`: every component's counters as one JSON document, what
//! `sonde top` and the graph page poll (they take rates from the
//! difference between two polls), plus the eBPF sources' loss counters
//! and the agent's pid (for `sonde top`'s per-program figures).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;

use super::ApiState;
use crate::telemetry::{InternalMetric, InternalValue};
use crate::topology::component_metrics::{BUFFER_EVENTS, DROPPED_EVENTS, ERRORS, RECEIVED_EVENTS, SENT_EVENTS};

/// Prefix of the eBPF sources' own counters (`sonde_ebpf_lost_events_total` …).
const EBPF_PREFIX: &str = "sonde_ebpf_";

/// One component's counters.
#[derive(Debug, Default, Serialize)]
struct ComponentStats {
    id: String,
    kind: &'static str,
    #[serde(rename = "type")]
    type_name: &'static str,
    received_events: u64,
    sent_events: u64,
    /// Dropped events by reason (only reasons with drops).
    dropped: BTreeMap<String, u64>,
    errors: u64,
    buffer_events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    buffer_max: Option<usize>,
}

/// One eBPF counter of a component.
#[derive(Debug, Serialize)]
struct EbpfStat {
    component_id: String,
    name: String,
    labels: BTreeMap<String, String>,
    value: u64,
}

fn label<'a>(metric: &'a InternalMetric, key: &str) -> Option<&'a str> {
    metric.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn count(value: &InternalValue) -> u64 {
    match value {
        InternalValue::Counter(n) => *n,
        InternalValue::Gauge(g) => g.max(0.0) as u64,
        InternalValue::Histogram { count, .. } => *count,
    }
}

pub(super) async fn stats(State(state): State<ApiState>) -> impl IntoResponse {
    let graph = state.graph.load();
    let mut components: Vec<ComponentStats> = graph
        .iter()
        .map(|n| ComponentStats {
            id: n.id.to_string(),
            kind: n.kind.as_str(),
            type_name: n.type_name,
            buffer_max: n.buffer_max,
            ..ComponentStats::default()
        })
        .collect();
    let mut ebpf = Vec::new();
    for metric in state.telemetry.snapshot() {
        let Some(id) = label(&metric, "component_id") else {
            continue;
        };
        if metric.name.starts_with(EBPF_PREFIX) {
            ebpf.push(EbpfStat {
                component_id: id.to_string(),
                labels: metric
                    .labels
                    .iter()
                    .filter(|(k, _)| !k.starts_with("component_"))
                    .cloned()
                    .collect(),
                value: count(&metric.value),
                name: metric.name,
            });
            continue;
        }
        // Counters of a component a reload removed stay in the store: only
        // the running ones are shown.
        let Some(c) = components.iter_mut().find(|c| c.id == id) else {
            continue;
        };
        let value = count(&metric.value);
        match metric.name.as_str() {
            RECEIVED_EVENTS => c.received_events += value,
            SENT_EVENTS => c.sent_events += value,
            ERRORS => c.errors += value,
            BUFFER_EVENTS => c.buffer_events += value,
            DROPPED_EVENTS if value > 0 => {
                let reason = label(&metric, "reason").unwrap_or("unknown").to_string();
                *c.dropped.entry(reason).or_default() += value;
            }
            _ => {}
        }
    }
    Json(serde_json::json!({
        "pid": std::process::id(),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "components": components,
        "ebpf": ebpf,
    }))
}
