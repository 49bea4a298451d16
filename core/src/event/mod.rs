//! Events: what travels the graph.
//!
//! One enum, [`Event`], with four kinds — [`Metric`], [`Log`], [`Profile`],
//! [`Span`] — moving between components in [`EventBatch`]es. Every event
//! carries [`Attributes`] saying where it came from, so enrichment and
//! filtering work the same for all kinds.

mod attributes;
mod batch;
mod kind;
mod log;
mod metric;
mod profile;
mod shared_str;
mod span;
mod timestamp;

pub use attributes::{keys, Attribute, Attributes, SharedAttributes, Value, INLINE_ATTRIBUTES};
pub use batch::{BatchId, EventBatch};
pub use kind::{EventKind, EventKinds};
pub use log::{Log, Severity};
pub use metric::{Histogram, Metric, MetricValue, Temporality};
pub use profile::{Frame, FrameKind, Profile, StackSample};
pub use shared_str::SharedStr;
pub use span::{Span, SpanKind, SpanStatus};
pub use timestamp::Timestamp;

use serde::Serialize;

/// One piece of telemetry.
// Metrics stay inline on purpose: they are the bulk of all events, and a box
// per metric would cost an allocation each; the rarer kinds are boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A metric data point.
    Metric(Metric),
    /// A structured record (boxed: logs carry two attribute sets).
    Log(Box<Log>),
    /// Stack samples (boxed: large and rare).
    Profile(Box<Profile>),
    /// A traced request (boxed: large).
    Span(Box<Span>),
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Metric(_) => EventKind::Metric,
            Event::Log(_) => EventKind::Log,
            Event::Profile(_) => EventKind::Profile,
            Event::Span(_) => EventKind::Span,
        }
    }

    /// Origin attributes (pid, cgroup, pod, node …).
    pub fn attributes(&self) -> &Attributes {
        match self {
            Event::Metric(m) => &m.attributes,
            Event::Log(l) => &l.attributes,
            Event::Profile(p) => &p.attributes,
            Event::Span(s) => &s.attributes,
        }
    }

    /// Origin attributes, mutable.
    pub fn attributes_mut(&mut self) -> &mut Attributes {
        match self {
            Event::Metric(m) => &mut m.attributes,
            Event::Log(l) => &mut l.attributes,
            Event::Profile(p) => &mut p.attributes,
            Event::Span(s) => &mut s.attributes,
        }
    }

    /// The event's name: metric name, log name, span name or profile sample type.
    pub fn name(&self) -> &str {
        match self {
            Event::Metric(m) => &m.name,
            Event::Log(l) => &l.name,
            Event::Profile(p) => &p.sample_type,
            Event::Span(s) => &s.name,
        }
    }

    /// When it happened (a span's and a profile's start).
    pub fn timestamp(&self) -> Timestamp {
        match self {
            Event::Metric(m) => m.timestamp,
            Event::Log(l) => l.timestamp,
            Event::Profile(p) => p.start,
            Event::Span(s) => s.start,
        }
    }
}

impl From<Metric> for Event {
    fn from(m: Metric) -> Self {
        Event::Metric(m)
    }
}
impl From<Log> for Event {
    fn from(l: Log) -> Self {
        Event::Log(Box::new(l))
    }
}
impl From<Profile> for Event {
    fn from(p: Profile) -> Self {
        Event::Profile(Box::new(p))
    }
}
impl From<Span> for Event {
    fn from(s: Span) -> Self {
        Event::Span(Box::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_stay_small() {
        // Batches of a thousand events must fit in cache: the hot variant
        // (metrics) is kept inline and small, the rest are boxed.
        assert!(
            std::mem::size_of::<Event>() <= 320,
            "Event is {} bytes",
            std::mem::size_of::<Event>()
        );
    }

    #[test]
    fn event_serializes_with_kind_tag() {
        let metric = Metric::gauge("up", 1.0).with_timestamp(Timestamp::from_nanos(1_000_000_000));
        let json = serde_json::to_value(Event::from(metric)).unwrap();
        assert_eq!(json["kind"], "metric");
        assert_eq!(json["name"], "up");
        assert_eq!(json["value"]["type"], "gauge");
        assert_eq!(json["timestamp"], "1970-01-01T00:00:01.000000000Z");
    }

    #[test]
    fn a_span_has_one_kind_key_and_its_side_as_span_kind() {
        let span = Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            name: "GET /".into(),
            kind: SpanKind::Server,
            start: Timestamp::from_nanos(1),
            end: Timestamp::from_nanos(2),
            status: SpanStatus::Unset,
            fields: Attributes::new(),
            attributes: Attributes::new(),
        };
        let text = serde_json::to_string(&Event::from(span)).unwrap();
        assert_eq!(text.matches("\"kind\":").count(), 1, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (json["kind"].as_str(), json["span_kind"].as_str()),
            (Some("span"), Some("server"))
        );
    }
}
