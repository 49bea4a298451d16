//! [`SeriesStore`]: the current value of every series, as Prometheus wants
//! it — cumulative, with a bound on how many series exist.
//!
//! - Deltas (what eBPF sources read and reset each interval) are added up
//!   per series; cumulative points replace the value; gauges are set.
//! - A series not updated for `expire_after` disappears, so a pod that is
//!   gone stops being exposed.
//! - The cardinality guard: labels pass an allowlist and a denylist, and a
//!   new series beyond `max_series` is refused and counted, never stored.
//!
//! Series are keyed by their label set already rendered and escaped
//! (`a="x",b="y"`): the key is unique per label set, hashing one string is
//! cheaper than hashing pairs, and the scrape then copies it as is.

use std::time::{Duration, Instant};

// foldhash (hashbrown's default): several times faster than std's SipHash
// on label-set keys of a hundred bytes or more, and still seeded per process.
use hashbrown::hash_map::EntryRef;
use hashbrown::{HashMap, HashSet};
use metrics::{Counter, Gauge, Label};
use sonde_core::event::{Histogram, Metric, MetricValue, SharedStr, Temporality};

use super::{labels, naming};

/// Longest time between two sweeps of expired series.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The Prometheus type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `counter`: exposed with `_total`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket{le}`, `_sum`, `_count`.
    Histogram,
}

impl Kind {
    fn of(value: &MetricValue) -> Kind {
        match value {
            MetricValue::Counter { .. } => Kind::Counter,
            MetricValue::Gauge { .. } => Kind::Gauge,
            MetricValue::Histogram(_) => Kind::Histogram,
        }
    }
}

/// Why a sample was not stored (the `reason` label of the refused counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// It would have created a series beyond `max_series`.
    MaxSeries,
    /// Its metric name is already a family of another type.
    TypeConflict,
    /// Another metric name sanitises to the same Prometheus name.
    NameConflict,
    /// Remote write only: not newer than the last sample sent for its series.
    OutOfOrder,
    /// A histogram whose counts do not match its bounds.
    Invalid,
}

impl Refused {
    const ALL: [Refused; 5] = [
        Refused::MaxSeries,
        Refused::TypeConflict,
        Refused::NameConflict,
        Refused::OutOfOrder,
        Refused::Invalid,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::MaxSeries => "max_series",
            Refused::TypeConflict => "type_conflict",
            Refused::NameConflict => "name_conflict",
            Refused::OutOfOrder => "out_of_order",
            Refused::Invalid => "invalid",
        }
    }
}

/// Agent metric: samples the sink refused, by `reason`.
pub const REFUSED_SAMPLES: &str = "sonde_prometheus_refused_samples_total";
/// Agent metric: Prometheus series the sink holds (a histogram counts one per bucket, plus `_sum` and `_count`).
pub const SERIES: &str = "sonde_prometheus_series";

/// What the store is allowed to keep.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Most Prometheus series held.
    pub max_series: usize,
    /// A series not updated for this long is removed.
    pub expire_after: Duration,
    /// Only these label names are kept (sanitised names), when set.
    pub label_allowlist: Option<Vec<String>>,
    /// These label names are removed (sanitised names).
    pub label_denylist: Vec<String>,
    /// Keep each series' labels as pairs too (remote write sends them so).
    pub keep_label_pairs: bool,
}

/// One series: its value and when it last changed.
#[derive(Debug)]
pub struct Series {
    /// Unique within the store, never reused.
    pub id: u64,
    /// Cumulative value: a counter's total, a gauge's value, or a histogram.
    pub value: SeriesValue,
    /// Store clock, in milliseconds, of the last update.
    pub updated_ms: u64,
    /// Remote write: timestamp (ms since the epoch) of the last sample sent.
    pub last_sent_ms: i64,
    /// Remote write: the labels as sorted (name, value) pairs.
    pub labels: Option<labels::LabelPairs>,
    weight: usize,
}

/// A series' value.
#[derive(Debug, Clone, PartialEq)]
pub enum SeriesValue {
    /// Counter total or gauge value.
    Scalar(f64),
    /// Per-bucket counts (not cumulative), sum and count.
    Histogram(Box<Histogram>),
}

impl SeriesValue {
    /// How many Prometheus series this value is exposed as.
    fn weight(&self) -> usize {
        match self {
            SeriesValue::Scalar(_) => 1,
            SeriesValue::Histogram(h) => h.bounds.len() + 3,
        }
    }
}

/// A metric family: every series of one name.
#[derive(Debug)]
pub struct Family {
    /// The exposed name (a counter's without `_total`).
    pub name: Box<str>,
    /// Its type.
    pub kind: Kind,
    /// HELP text: the first description seen.
    pub help: Option<Box<str>>,
    /// Unit word the name ends with (`seconds`), for OpenMetrics' UNIT line.
    pub unit: Option<Box<str>>,
    /// Series by their rendered label set.
    pub series: HashMap<Box<str>, Series>,
}

/// The parts of a family that a stored sample is reported with.
#[derive(Debug)]
pub struct Stored<'a> {
    /// The exposed family name.
    pub name: &'a str,
    /// Its type.
    pub kind: Kind,
    /// HELP text.
    pub help: Option<&'a str>,
    /// Unit word.
    pub unit: Option<&'a str>,
    /// The series, updated.
    pub series: &'a mut Series,
}

struct StoreMetrics {
    refused: [Counter; 5],
    series: Gauge,
}

/// Every series a Prometheus sink holds.
pub struct SeriesStore {
    config: StoreConfig,
    families: HashMap<SharedStr, Family>,
    names: HashSet<Box<str>>,
    series: usize,
    next_id: u64,
    refused: [u64; 5],
    metrics: StoreMetrics,
    clock: Instant,
    next_sweep_ms: u64,
    key: String,
    label_names: labels::LabelNames,
}

impl SeriesStore {
    /// An empty store whose agent metrics carry `labels` (the component's).
    pub fn new(config: StoreConfig, labels: Vec<Label>) -> Self {
        let refused = Refused::ALL.map(|reason| {
            let mut l = labels.clone();
            l.push(Label::new("reason", reason.as_str()));
            metrics::counter!(REFUSED_SAMPLES, l)
        });
        SeriesStore {
            label_names: labels::LabelNames::new(&config),
            config,
            families: HashMap::new(),
            names: HashSet::new(),
            series: 0,
            next_id: 0,
            refused: [0; 5],
            metrics: StoreMetrics {
                refused,
                series: metrics::gauge!(SERIES, labels),
            },
            clock: Instant::now(),
            next_sweep_ms: 0,
            key: String::new(),
        }
    }

    /// The store clock: milliseconds since the store was made. Read once per
    /// batch; a monotonic clock, because event timestamps may be old or skewed.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Prometheus series held.
    pub fn len(&self) -> usize {
        self.series
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.series == 0
    }

    /// Samples refused so far for `reason`.
    pub fn refused(&self, reason: Refused) -> u64 {
        self.refused[reason as usize]
    }

    /// Takes `config` in place of the store's own, keeping every series,
    /// when the labels it makes are the same (a reload that changed only
    /// `max_series` or `expire_after`); false when they differ, and the
    /// caller starts a new store.
    pub fn reconfigure(&mut self, config: &StoreConfig) -> bool {
        let same_labels = self.config.label_allowlist == config.label_allowlist
            && self.config.label_denylist == config.label_denylist
            && self.config.keep_label_pairs == config.keep_label_pairs;
        if same_labels {
            self.config = config.clone();
        }
        same_labels
    }

    /// Samples refused so far, every reason together.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// Counts `n` refused samples.
    pub fn refuse(&mut self, reason: Refused, n: u64) {
        count(&mut self.refused, &self.metrics, reason, n);
    }

    /// The families, in no particular order.
    pub fn families(&self) -> impl Iterator<Item = &Family> {
        self.families.values()
    }

    /// Removes series not updated for `expire_after`, and families left empty.
    pub fn sweep(&mut self, now_ms: u64) {
        let expire_ms = self.config.expire_after.as_millis() as u64;
        let mut removed = 0;
        self.families.retain(|_, family| {
            family.series.retain(|_, s| {
                let keep = now_ms.saturating_sub(s.updated_ms) < expire_ms;
                if !keep {
                    removed += s.weight;
                }
                keep
            });
            if family.series.is_empty() {
                self.names.remove(&family.name);
                return false;
            }
            true
        });
        self.series -= removed;
        self.metrics.series.set(self.series as f64);
        let interval = self.config.expire_after.min(MAX_SWEEP_INTERVAL).as_millis() as u64;
        self.next_sweep_ms = now_ms + interval.max(1);
    }

    /// Sweeps when one is due; called once per batch.
    pub fn maybe_sweep(&mut self, now_ms: u64) {
        if now_ms >= self.next_sweep_ms {
            self.sweep(now_ms);
        }
    }

    /// Adds one metric point; returns its family and updated series, or why it was refused (counted).
    pub fn ingest(&mut self, metric: &Metric, now_ms: u64) -> Result<Stored<'_>, Refused> {
        let kind = Kind::of(&metric.value);
        if !well_formed(&metric.value) {
            self.refuse(Refused::Invalid, 1);
            return Err(Refused::Invalid);
        }
        self.label_names.learn(&metric.attributes);
        let labels = labels::sorted(metric, kind, &self.label_names);
        labels::render_key(&mut self.key, &labels);
        // Looked up twice rather than matched once: a borrow returned from
        // one arm of a match would stay alive in the others (NLL case #3).
        if !self.families.contains_key(metric.name.as_str()) {
            let (name, unit) = naming::family_name(&metric.name, metric.unit.as_deref(), kind);
            if self.names.contains(name.as_str()) {
                count(&mut self.refused, &self.metrics, Refused::NameConflict, 1);
                return Err(Refused::NameConflict);
            }
            self.names.insert(name.clone().into_boxed_str());
            let unit = unit.filter(|u| name.ends_with(&format!("_{u}")));
            self.families.insert(
                metric.name.clone(),
                Family {
                    name: name.into_boxed_str(),
                    kind,
                    help: None,
                    unit: unit.map(String::into_boxed_str),
                    series: HashMap::new(),
                },
            );
        }
        let family = self.families.get_mut(metric.name.as_str()).expect("inserted above");
        if family.kind != kind {
            count(&mut self.refused, &self.metrics, Refused::TypeConflict, 1);
            return Err(Refused::TypeConflict);
        }
        if family.help.is_none() {
            family.help = metric.description.as_deref().map(Box::from);
        }
        let Family {
            name,
            kind,
            help,
            unit,
            series,
        } = family;
        // One hash of the key, and the key allocated only for a new series.
        let vacant = match series.entry_ref(self.key.as_str()) {
            EntryRef::Occupied(entry) => {
                let s = entry.into_mut();
                let before = s.weight;
                update(&mut s.value, &metric.value, metric.temporality);
                s.weight = s.value.weight();
                s.updated_ms = now_ms;
                if s.weight != before {
                    self.series = self.series + s.weight - before;
                    self.metrics.series.set(self.series as f64);
                }
                return Ok(Stored {
                    name,
                    kind: *kind,
                    help: help.as_deref(),
                    unit: unit.as_deref(),
                    series: s,
                });
            }
            EntryRef::Vacant(entry) => entry,
        };
        let value = initial(&metric.value);
        let weight = value.weight();
        if self.series + weight > self.config.max_series {
            count(&mut self.refused, &self.metrics, Refused::MaxSeries, 1);
            return Err(Refused::MaxSeries);
        }
        self.series += weight;
        self.metrics.series.set(self.series as f64);
        self.next_id += 1;
        let s = vacant.insert(Series {
            id: self.next_id,
            value,
            updated_ms: now_ms,
            last_sent_ms: i64::MIN,
            labels: self.config.keep_label_pairs.then(|| labels::pairs(&labels)),
            weight,
        });
        Ok(Stored {
            name,
            kind: *kind,
            help: help.as_deref(),
            unit: unit.as_deref(),
            series: s,
        })
    }
}

/// Counts refused samples; a function of the two fields, so that it can
/// be called while a family is borrowed.
fn count(refused: &mut [u64; 5], metrics: &StoreMetrics, reason: Refused, n: u64) {
    refused[reason as usize] += n;
    metrics.refused[reason as usize].increment(n);
}

/// A histogram must have one count per bucket plus the overflow bucket;
/// anything else would be exposed wrong, so it is refused.
fn well_formed(value: &MetricValue) -> bool {
    match value {
        MetricValue::Histogram(h) => h.counts.len() == h.bounds.len() + 1,
        _ => true,
    }
}

fn initial(value: &MetricValue) -> SeriesValue {
    match value {
        MetricValue::Counter { value } | MetricValue::Gauge { value } => SeriesValue::Scalar(*value),
        MetricValue::Histogram(h) => SeriesValue::Histogram(h.clone()),
    }
}

/// Applies one point to a series' value.
fn update(current: &mut SeriesValue, point: &MetricValue, temporality: Temporality) {
    match (current, point, temporality) {
        (SeriesValue::Scalar(total), MetricValue::Counter { value }, Temporality::Delta) => *total += value,
        (SeriesValue::Scalar(v), MetricValue::Counter { value } | MetricValue::Gauge { value }, _) => *v = *value,
        (SeriesValue::Histogram(total), MetricValue::Histogram(h), Temporality::Delta) => {
            // Changed bounds cannot be added up: start over from this
            // point, which Prometheus reads as a counter reset.
            if !total.merge(h) {
                **total = (**h).clone();
            }
        }
        (SeriesValue::Histogram(total), MetricValue::Histogram(h), Temporality::Cumulative) => {
            if total.bounds == h.bounds && total.counts.len() == h.counts.len() {
                total.counts.copy_from_slice(&h.counts);
                total.sum = h.sum;
                total.count = h.count;
            } else {
                **total = (**h).clone();
            }
        }
        // Kinds are checked per family before this is called.
        (current, point, _) => *current = initial(point),
    }
}
