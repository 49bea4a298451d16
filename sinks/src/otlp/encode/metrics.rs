//! Metric events → `ExportMetricsServiceRequest`.
//!
//! Counters become monotonic sums and histograms explicit-bucket histograms,
//! both with the event's temporality; gauges stay gauges. Points with the
//! same name, type and temporality share one OTLP `Metric` per scope.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric as OtlpMetric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use sonde_core::event::{Metric, MetricValue, SharedStr, Temporality, Timestamp};

use super::common::{point_attributes, scope, set_hash, Grouper, ResourceDefaults};

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

/// The metrics of one scope, indexed by what makes an OTLP `Metric`.
#[derive(Default)]
pub struct ScopeContent {
    metrics: Vec<OtlpMetric>,
    index: HashMap<(SharedStr, u8, i32), usize>,
}

fn otlp_temporality(t: Temporality) -> i32 {
    match t {
        Temporality::Delta => AggregationTemporality::Delta as i32,
        Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
    }
}

/// An empty OTLP metric of `metric`'s name and type.
fn shell(metric: &Metric) -> OtlpMetric {
    let temporality = otlp_temporality(metric.temporality);
    let data = match metric.value {
        MetricValue::Counter { .. } => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: temporality,
            is_monotonic: true,
        }),
        MetricValue::Gauge { .. } => metric::Data::Gauge(Gauge::default()),
        MetricValue::Histogram(_) => metric::Data::Histogram(Histogram {
            data_points: Vec::new(),
            aggregation_temporality: temporality,
        }),
    };
    OtlpMetric {
        name: metric.name.to_string(),
        description: metric.description.as_deref().unwrap_or_default().to_string(),
        unit: metric.unit.as_deref().unwrap_or_default().to_string(),
        data: Some(data),
        ..OtlpMetric::default()
    }
}

fn number_point(metric: &Metric, value: f64, start: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: point_attributes(&metric.attributes),
        start_time_unix_nano: start,
        time_unix_nano: metric.timestamp.as_nanos(),
        value: Some(number_data_point::Value::AsDouble(value)),
        ..NumberDataPoint::default()
    }
}

impl ScopeContent {
    fn push(&mut self, metric: &Metric, starts: &StartTimes) {
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
        let key = (metric.name.clone(), type_code, temporality);
        let index = *self.index.entry(key).or_insert_with(|| {
            self.metrics.push(shell(metric));
            self.metrics.len() - 1
        });
        let Some(data) = &mut self.metrics[index].data else {
            unreachable!("shell() always sets data")
        };
        match (&metric.value, data) {
            (MetricValue::Counter { value }, metric::Data::Sum(sum)) => {
                let start = starts.start_of(metric);
                sum.data_points.push(number_point(metric, *value, start));
            }
            (MetricValue::Gauge { value }, metric::Data::Gauge(gauge)) => {
                // Gauges are instantaneous: OTLP leaves their start time unset.
                gauge.data_points.push(number_point(metric, *value, 0));
            }
            (MetricValue::Histogram(h), metric::Data::Histogram(histogram)) => {
                histogram.data_points.push(HistogramDataPoint {
                    attributes: point_attributes(&metric.attributes),
                    start_time_unix_nano: starts.start_of(metric),
                    time_unix_nano: metric.timestamp.as_nanos(),
                    count: h.count,
                    sum: Some(h.sum),
                    bucket_counts: h.counts.clone(),
                    explicit_bounds: h.bounds.to_vec(),
                    ..HistogramDataPoint::default()
                });
            }
            _ => unreachable!("the index key includes the value type"),
        }
    }
}

/// One request carrying `metrics`.
pub fn encode(metrics: &[&Metric], defaults: &ResourceDefaults, starts: &StartTimes) -> ExportMetricsServiceRequest {
    let mut grouper = Grouper::<ScopeContent>::new(defaults);
    for metric in metrics {
        grouper.scope_for(&metric.attributes).push(metric, starts);
    }
    ExportMetricsServiceRequest {
        resource_metrics: grouper
            .groups
            .into_iter()
            .map(|group| ResourceMetrics {
                resource: Some(group.resource),
                scope_metrics: group
                    .scopes
                    .into_iter()
                    .map(|(component, content)| ScopeMetrics {
                        scope: Some(scope(component.as_ref())),
                        metrics: content.metrics,
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Data points in a request: what partial-success counts refer to.
pub fn points(request: &ExportMetricsServiceRequest) -> usize {
    let per_metric = |m: &OtlpMetric| match &m.data {
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        _ => 0,
    };
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(per_metric)
        .sum()
}
