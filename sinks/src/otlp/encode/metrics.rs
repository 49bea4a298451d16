//! Metric events → `ExportMetricsServiceRequest`.
//!
//! Counters become monotonic sums and histograms explicit-bucket histograms,
//! both with the event's temporality; gauges stay gauges. Points with the
//! same name, type and temporality share one OTLP `Metric` per scope.
//!
//! Metrics are the bulk of what the sink sends, so they are encoded
//! straight into protobuf bytes ([`super::wire`]) rather than through
//! `opentelemetry-proto` structs: no string is copied per point, and the
//! bytes go to the transport as they are.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;
use prost::Message;
use sonde_core::event::{keys, Metric, MetricValue, SharedStr, Temporality, Timestamp};

use super::common::{is_resource_key, scope, set_hash, Grouper, ResourceDefaults};
use super::wire;

/// Series whose start time is remembered; past this the memory is cleared
/// (the next point of each series then starts at the sink's start), so a
/// cardinality explosion upstream cannot grow the sink without bound.
pub const MAX_TRACKED_SERIES: usize = 100_000;

/// Points remembered per delta series, so that a retried or split batch
/// holding several points of one series re-encodes each with the same start.
const REMEMBERED_POINTS: usize = 4;

/// The `start_time_unix_nano` of sums and histograms, which sonde's events
/// do not carry: OTLP consumers need it to compute rates and detect resets.
///
/// - cumulative: the sink's start (the agent's counters start with it), or
///   the point's own time if that is earlier;
/// - delta: the time of the series' previous point, so consecutive deltas
///   tile the time line; the first point starts at the sink's start.
#[derive(Debug)]
pub struct StartTimes {
    started: u64,
    /// Series hash → (time, start) of its latest points, oldest first.
    series: Mutex<HashMap<u64, VecDeque<(u64, u64)>>>,
}

impl StartTimes {
    /// Start times for a sink started at `started`.
    pub fn new(started: Timestamp) -> Self {
        StartTimes {
            started: started.as_nanos(),
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The start time of `metric`'s point.
    pub fn start_of(&self, metric: &Metric) -> u64 {
        let time = metric.timestamp.as_nanos();
        if metric.temporality == Temporality::Cumulative {
            return self.started.min(time);
        }
        let key = set_hash(&metric.attributes, |_| true) ^ name_hash(&metric.name);
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if series.len() >= MAX_TRACKED_SERIES && !series.contains_key(&key) {
            series.clear();
        }
        let points = series.entry(key).or_default();
        if let Some(&(_, start)) = points.iter().find(|(t, _)| *t == time) {
            return start;
        }
        let start = match points.back() {
            Some(&(latest, _)) if time > latest => latest,
            // Older than the latest point but forgotten: its interval is unknown.
            Some(_) => return time,
            None => self.started.min(time),
        };
        if points.len() == REMEMBERED_POINTS {
            points.pop_front();
        }
        points.push_back((time, start));
        start
    }
}

fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// An `ExportMetricsServiceRequest`, already encoded.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedMetrics {
    /// The protobuf encoding.
    pub body: Bytes,
    /// Data points in it: what partial-success counts refer to.
    pub points: usize,
}

impl EncodedMetrics {
    /// The request as `opentelemetry-proto` structs (tests, benchmarks).
    pub fn decode(&self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest::decode(&self.body[..]).expect("the encoder writes valid protobuf")
    }
}

/// What makes an OTLP `Metric`: name, value type, temporality.
type MetricKey = (SharedStr, u8, i32);

/// The metrics of one scope: per OTLP `Metric`, the indices of its points.
#[derive(Default)]
pub struct ScopeSlots {
    slots: Vec<(MetricKey, Vec<u32>)>,
    index: HashMap<MetricKey, usize>,
}

fn otlp_temporality(t: Temporality) -> i32 {
    match t {
        Temporality::Delta => AggregationTemporality::Delta as i32,
        Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
    }
}

fn key_of(metric: &Metric) -> MetricKey {
    let type_code = match metric.value {
        MetricValue::Counter { .. } => 0,
        MetricValue::Gauge { .. } => 1,
        MetricValue::Histogram(_) => 2,
    };
    // Gauges have no temporality; keep them in one metric whatever the event says.
    let temporality = if type_code == 1 {
        0
    } else {
        otlp_temporality(metric.temporality)
    };
    (metric.name.clone(), type_code, temporality)
}

impl ScopeSlots {
    fn push(&mut self, index: u32, metric: &Metric) {
        // Consecutive points mostly belong to the metric of the previous
        // one: compare with it before hashing the name.
        if let Some((key, points)) = self.slots.last_mut() {
            if key.0 == metric.name && *key == key_of(metric) {
                points.push(index);
                return;
            }
        }
        let key = key_of(metric);
        match self.index.get(&key) {
            Some(&slot) => self.slots[slot].1.push(index),
            None => {
                self.index.insert(key.clone(), self.slots.len());
                self.slots.push((key, vec![index]));
            }
        }
    }
}

/// Writes the point attributes of `metric` (all but the resource's and the
/// scope's) as `KeyValue` field `field`.
fn point_attributes(buf: &mut Vec<u8>, field: u32, metric: &Metric) {
    for (key, value) in metric.attributes.iter() {
        if !is_resource_key(key) && key.as_str() != keys::COMPONENT_ID {
            wire::key_value(buf, field, key, value);
        }
    }
}

/// One `NumberDataPoint` or `HistogramDataPoint` (field 1 of its metric).
fn write_point(buf: &mut Vec<u8>, metric: &Metric, starts: &StartTimes) {
    let time = metric.timestamp.as_nanos();
    wire::message(buf, 1, |buf| match &metric.value {
        MetricValue::Counter { value } | MetricValue::Gauge { value } => {
            // Gauges are instantaneous: OTLP leaves their start time unset.
            if matches!(metric.value, MetricValue::Counter { .. }) {
                wire::fixed64(buf, 2, starts.start_of(metric));
            }
            wire::fixed64(buf, 3, time);
            wire::double(buf, 4, *value, true);
            point_attributes(buf, 7, metric);
        }
        MetricValue::Histogram(h) => {
            wire::fixed64(buf, 2, starts.start_of(metric));
            wire::fixed64(buf, 3, time);
            wire::fixed64(buf, 4, h.count);
            wire::double(buf, 5, h.sum, true);
            wire::packed_fixed64(buf, 6, h.counts.iter().copied());
            wire::packed_fixed64(buf, 7, h.bounds.iter().map(|b| b.to_bits()));
            point_attributes(buf, 9, metric);
        }
    });
}

/// One OTLP `Metric` (field 2 of its scope) holding the points `indices` of `metrics`.
fn write_metric(buf: &mut Vec<u8>, key: &MetricKey, indices: &[u32], metrics: &[&Metric], starts: &StartTimes) {
    let first = metrics[indices[0] as usize];
    let (_, type_code, temporality) = *key;
    wire::message(buf, 2, |buf| {
        wire::string(buf, 1, &first.name);
        wire::string(buf, 2, first.description.as_deref().unwrap_or_default());
        wire::string(buf, 3, first.unit.as_deref().unwrap_or_default());
        // Gauge = 5, Sum = 7, Histogram = 9 in `Metric.data`.
        let field = [7, 5, 9][type_code as usize];
        wire::message(buf, field, |buf| {
            for &i in indices {
                write_point(buf, metrics[i as usize], starts);
            }
            if type_code != 1 {
                wire::uint(buf, 2, temporality as u64);
            }
            if type_code == 0 {
                wire::uint(buf, 3, 1); // is_monotonic
            }
        });
    });
}

/// One request carrying `metrics`, encoded: grouped by resource, scope and
/// metric first (indices only), then written in one pass, each point's
/// attributes straight from the event.
pub fn encode(metrics: &[&Metric], defaults: &ResourceDefaults, starts: &StartTimes) -> EncodedMetrics {
    let mut grouper = Grouper::<ScopeSlots>::new(defaults);
    for (i, metric) in metrics.iter().enumerate() {
        grouper.scope_for(&metric.attributes).push(i as u32, metric);
    }
    // About what a demo gauge point takes, so that the buffer rarely grows.
    let mut buf = Vec::with_capacity(256 + metrics.len() * 48);
    for group in &grouper.groups {
        wire::message(&mut buf, 1, |buf| {
            wire::message(buf, 1, |buf| group.resource.encode_raw(buf));
            for (component, slots) in &group.scopes {
                wire::message(buf, 2, |buf| {
                    wire::message(buf, 1, |buf| scope(component.as_ref()).encode_raw(buf));
                    for (key, indices) in &slots.slots {
                        write_metric(buf, key, indices, metrics, starts);
                    }
                });
            }
        });
    }
    EncodedMetrics {
        body: Bytes::from(buf),
        points: metrics.len(),
    }
}
