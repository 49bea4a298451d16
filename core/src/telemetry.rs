//! The agent's own metrics.
//!
//! Components record through the `metrics` crate facade. One global
//! recorder fans out to metrics-exporter-prometheus (rendered on the agent
//! API's `/metrics`) and to an in-process store that the `internal_metrics`
//! source reads, so the agent's health can flow through the pipeline like
//! any other telemetry. The store keeps histograms as fixed buckets: memory
//! stays bounded whether or not anything reads it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::layers::FanoutBuilder;

/// Bucket bounds (seconds) of the agent's duration histograms: 1 µs to 10 s.
pub const DURATION_BUCKETS: [f64; 15] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
];

/// Handles to the installed recorder.
pub struct Telemetry {
    prometheus: PrometheusHandle,
    store: Arc<InternalStore>,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// Installs the global recorder once and returns it; later calls return the same.
pub fn install() -> &'static Telemetry {
    TELEMETRY.get_or_init(|| {
        let prometheus = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &DURATION_BUCKETS)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = prometheus.handle();
        let store = Arc::new(InternalStore::default());
        let fanout = FanoutBuilder::default()
            .add_recorder(prometheus)
            .add_recorder(StoreRecorder(store.clone()))
            .build();
        if metrics::set_global_recorder(fanout).is_err() {
            tracing::warn!("a metrics recorder was already installed; agent metrics go there");
        }
        Telemetry {
            prometheus: handle,
            store,
        }
    })
}

impl Telemetry {
    /// The Prometheus text exposition of every agent metric.
    pub fn render_prometheus(&self) -> String {
        self.prometheus.run_upkeep();
        self.prometheus.render()
    }

    /// Current values of every agent metric.
    pub fn snapshot(&self) -> Vec<InternalMetric> {
        self.store.snapshot()
    }
}

/// One agent metric's current value.
#[derive(Debug, Clone, PartialEq)]
pub struct InternalMetric {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: Vec<(String, String)>,
    /// Help text, when one was described.
    pub description: Option<String>,
    /// Value.
    pub value: InternalValue,
}

/// The value of an agent metric.
#[derive(Debug, Clone, PartialEq)]
pub enum InternalValue {
    /// A cumulative count.
    Counter(u64),
    /// A current value.
    Gauge(f64),
    /// A cumulative histogram over [`DURATION_BUCKETS`]-style bounds.
    Histogram {
        /// Upper bounds.
        bounds: Arc<[f64]>,
        /// Per-bucket (non-cumulative) counts, one more than bounds.
        counts: Vec<u64>,
        /// Sum of values.
        sum: f64,
        /// Number of values.
        count: u64,
    },
}

#[derive(Default)]
struct InternalStore {
    counters: RwLock<HashMap<Key, Arc<AtomicU64>>>,
    gauges: RwLock<HashMap<Key, Arc<AtomicU64>>>,
    histograms: RwLock<HashMap<Key, Arc<BucketHistogram>>>,
    descriptions: RwLock<HashMap<String, String>>,
}

fn get_or_insert<T>(map: &RwLock<HashMap<Key, Arc<T>>>, key: &Key, make: impl FnOnce() -> T) -> Arc<T> {
    if let Some(found) = map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return found.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(key.clone())
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

impl InternalStore {
    fn snapshot(&self) -> Vec<InternalMetric> {
        let descriptions = self.descriptions.read().unwrap_or_else(|e| e.into_inner());
        let describe = |key: &Key| descriptions.get(key.name()).cloned();
        let labels = |key: &Key| {
            key.labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect()
        };
        let mut out = Vec::new();
        for (key, c) in self.counters.read().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push(InternalMetric {
                name: key.name().to_string(),
                labels: labels(key),
                description: describe(key),
                value: InternalValue::Counter(c.load(Ordering::Relaxed)),
            });
        }
        for (key, g) in self.gauges.read().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push(InternalMetric {
                name: key.name().to_string(),
                labels: labels(key),
                description: describe(key),
                value: InternalValue::Gauge(f64::from_bits(g.load(Ordering::Relaxed))),
            });
        }
        for (key, h) in self.histograms.read().unwrap_or_else(|e| e.into_inner()).iter() {
            out.push(InternalMetric {
                name: key.name().to_string(),
                labels: labels(key),
                description: describe(key),
                value: h.value(),
            });
        }
        out.sort_by(|a, b| (&a.name, &a.labels).cmp(&(&b.name, &b.labels)));
        out
    }
}

/// A histogram of fixed buckets updated with atomics.
struct BucketHistogram {
    bounds: Arc<[f64]>,
    counts: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
    count: AtomicU64,
}

impl BucketHistogram {
    fn new(bounds: Arc<[f64]>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        BucketHistogram {
            bounds,
            counts,
            sum_bits: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    fn value(&self) -> InternalValue {
        InternalValue::Histogram {
            bounds: self.bounds.clone(),
            counts: self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
            sum: f64::from_bits(self.sum_bits.load(Ordering::Relaxed)),
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

impl HistogramFn for BucketHistogram {
    fn record(&self, value: f64) {
        let index = self.bounds.partition_point(|b| *b < value);
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }
}

struct AtomicCounter(Arc<AtomicU64>);
impl CounterFn for AtomicCounter {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

struct AtomicGauge(Arc<AtomicU64>);
impl GaugeFn for AtomicGauge {
    fn increment(&self, value: f64) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
            Some((f64::from_bits(b) + value).to_bits())
        });
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

struct StoreRecorder(Arc<InternalStore>);

impl StoreRecorder {
    fn describe(&self, key: KeyName, description: SharedString) {
        self.0
            .descriptions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.as_str().to_string(), description.to_string());
    }
}

impl Recorder for StoreRecorder {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }
    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }
    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, description: SharedString) {
        self.describe(key, description);
    }
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = get_or_insert(&self.0.counters, key, || AtomicU64::new(0));
        Counter::from_arc(Arc::new(AtomicCounter(cell)))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let cell = get_or_insert(&self.0.gauges, key, || AtomicU64::new(0f64.to_bits()));
        Gauge::from_arc(Arc::new(AtomicGauge(cell)))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let cell = get_or_insert(&self.0.histograms, key, || {
            BucketHistogram::new(Arc::from(DURATION_BUCKETS))
        });
        Histogram::from_arc(cell)
    }
}
