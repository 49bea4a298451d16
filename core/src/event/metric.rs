//! [`Metric`]: a counter, gauge or explicit-bucket histogram data point.

use std::sync::Arc;

use serde::Serialize;

use super::{Attributes, SharedStr, Timestamp};

/// Whether a counter or histogram carries the change since the previous point
/// (`Delta`, what eBPF sources read and reset each interval) or the running
/// total (`Cumulative`). Sinks convert as their protocol requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Temporality {
    /// Change since the previous data point of the same series.
    Delta,
    /// Total since the series started.
    Cumulative,
}

/// A histogram with explicit upper bounds, as Prometheus and OTLP use.
///
/// `counts[i]` counts values `<= bounds[i]` and `> bounds[i-1]` (not
/// cumulative); `counts` has one more entry than `bounds`, for values above the
/// last bound. Bounds are shared between all points of a series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Histogram {
    /// Upper bounds, strictly increasing.
    pub bounds: Arc<[f64]>,
    /// Per-bucket counts, `bounds.len() + 1` entries.
    pub counts: Vec<u64>,
    /// Sum of all observed values.
    pub sum: f64,
    /// Number of observed values (the sum of `counts`).
    pub count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds`.
    pub fn new(bounds: Arc<[f64]>) -> Self {
        let counts = vec![0; bounds.len() + 1];
        Histogram {
            bounds,
            counts,
            sum: 0.0,
            count: 0,
        }
    }

    /// Records one value.
    pub fn observe(&mut self, value: f64) {
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.counts[index] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// Adds another histogram with the same bounds; returns false (and changes
    /// nothing) when the bounds differ.
    pub fn merge(&mut self, other: &Histogram) -> bool {
        if self.bounds != other.bounds {
            return false;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum += other.sum;
        self.count += other.count;
        true
    }
}

/// The value of a metric data point.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetricValue {
    /// A monotonic count.
    Counter {
        /// The count (or its increase, for delta temporality).
        value: f64,
    },
    /// A value that goes up and down.
    Gauge {
        /// The current value.
        value: f64,
    },
    /// A distribution (boxed: keeps counters and gauges small).
    Histogram(Box<Histogram>),
}

/// One metric data point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    /// Name, with its unit as a suffix following Prometheus conventions
    /// (`sonde_disk_latency_seconds`, `..._bytes_total`).
    pub name: SharedStr,
    /// One line saying what it measures (Prometheus HELP, OTLP description).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<SharedStr>,
    /// UCUM unit for OTLP (`s`, `By`, `1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<SharedStr>,
    /// The value.
    pub value: MetricValue,
    /// Delta or cumulative; ignored for gauges.
    pub temporality: Temporality,
    /// Series labels and origin.
    pub attributes: Attributes,
    /// When the value was observed.
    pub timestamp: Timestamp,
}

impl Metric {
    /// A cumulative counter.
    pub fn counter(name: impl Into<SharedStr>, value: f64) -> Self {
        Self::new(name, MetricValue::Counter { value }, Temporality::Cumulative)
    }

    /// A gauge.
    pub fn gauge(name: impl Into<SharedStr>, value: f64) -> Self {
        Self::new(name, MetricValue::Gauge { value }, Temporality::Cumulative)
    }

    /// A histogram point with the given temporality.
    pub fn histogram(name: impl Into<SharedStr>, histogram: Histogram, temporality: Temporality) -> Self {
        Self::new(name, MetricValue::Histogram(Box::new(histogram)), temporality)
    }

    fn new(name: impl Into<SharedStr>, value: MetricValue, temporality: Temporality) -> Self {
        Metric {
            name: name.into(),
            description: None,
            unit: None,
            value,
            temporality,
            attributes: Attributes::new(),
            timestamp: Timestamp::now(),
        }
    }

    /// Sets the temporality.
    pub fn with_temporality(mut self, temporality: Temporality) -> Self {
        self.temporality = temporality;
        self
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<SharedStr>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the unit.
    pub fn with_unit(mut self, unit: impl Into<SharedStr>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// Sets the attributes.
    pub fn with_attributes(mut self, attributes: Attributes) -> Self {
        self.attributes = attributes;
        self
    }

    /// Sets the timestamp.
    pub fn with_timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = timestamp;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive() {
        let mut h = Histogram::new(Arc::from([1.0, 2.0, 4.0]));
        for v in [0.5, 1.0, 1.5, 4.0, 9.0] {
            h.observe(v);
        }
        assert_eq!(h.counts, vec![2, 1, 1, 1]);
        assert_eq!(h.count, 5);
        assert_eq!(h.sum, 16.0);
        let copy = h.clone();
        assert!(h.merge(&copy));
        assert_eq!(h.counts, vec![4, 2, 2, 2]);
        assert!(!h.merge(&Histogram::new(Arc::from([1.0]))));
    }
}
