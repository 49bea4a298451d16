//! The per-component internal metrics, resolved once at build so the hot
//! path only increments atomics.
//!
//! Every series carries `component_kind`, `component_id` and `component_type`.

use metrics::{Counter, Gauge, Histogram, Label};

use crate::component::ComponentInfo;

/// Events a component accepted.
pub const RECEIVED_EVENTS: &str = "sonde_component_received_events_total";
/// Batches a component accepted.
pub const RECEIVED_BATCHES: &str = "sonde_component_received_batches_total";
/// Events a component passed on (sources, transforms) or delivered (sinks).
pub const SENT_EVENTS: &str = "sonde_component_sent_events_total";
/// Batches a component passed on or delivered.
pub const SENT_BATCHES: &str = "sonde_component_sent_batches_total";
/// Events lost, by `reason`.
pub const DROPPED_EVENTS: &str = "sonde_component_dropped_events_total";
/// Failed calls (each retry attempt counts).
pub const ERRORS: &str = "sonde_component_errors_total";
/// Time one call of the component's service took.
pub const CALL_SECONDS: &str = "sonde_component_call_duration_seconds";
/// Events waiting in the component's input queue.
pub const BUFFER_EVENTS: &str = "sonde_component_buffer_events";

/// Why events were dropped. `error` and `shutdown` are losses of events a
/// sink had accepted (they make `sonde run` exit non-zero); the others are
/// the pipeline's configured behaviour or a reader that went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// A `drop_newest` buffer was full.
    BufferFull,
    /// The sink failed permanently, or retries ran out.
    Error,
    /// The component does not accept this event kind.
    UnsupportedKind,
    /// Still held when a stop could not wait: the shutdown grace period
    /// ended, or a second signal came.
    Shutdown,
    /// The sink's destination closed for good (a closed pipe on stdout).
    OutputClosed,
    /// The backend accepted the request but rejected these events (OTLP
    /// partial success, a Prometheus limit): delivered = sent − rejected.
    Rejected,
    /// A disk buffer record was damaged (checksum), skipped.
    Corrupted,
}

impl DropReason {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::Error => "error",
            DropReason::UnsupportedKind => "unsupported_kind",
            DropReason::Shutdown => "shutdown",
            DropReason::OutputClosed => "output_closed",
            DropReason::Rejected => "rejected",
            DropReason::Corrupted => "corrupted",
        }
    }
}

/// Handles to one component's metrics.
#[derive(Clone, Debug)]
pub struct ComponentMetrics {
    /// [`RECEIVED_EVENTS`].
    pub received_events: Counter,
    /// [`RECEIVED_BATCHES`].
    pub received_batches: Counter,
    /// [`SENT_EVENTS`].
    pub sent_events: Counter,
    /// [`SENT_BATCHES`].
    pub sent_batches: Counter,
    /// [`ERRORS`].
    pub errors: Counter,
    /// [`CALL_SECONDS`].
    pub call_seconds: Histogram,
    /// [`BUFFER_EVENTS`].
    pub buffer_events: Gauge,
    dropped: [Counter; 7],
}

impl ComponentMetrics {
    /// Registers the metrics of `info` with the global recorder.
    pub fn new(info: &ComponentInfo) -> Self {
        let labels = labels(info);
        let dropped_with = |reason: DropReason| {
            let mut l = labels.clone();
            l.push(Label::new("reason", reason.as_str()));
            metrics::counter!(DROPPED_EVENTS, l)
        };
        ComponentMetrics {
            received_events: metrics::counter!(RECEIVED_EVENTS, labels.clone()),
            received_batches: metrics::counter!(RECEIVED_BATCHES, labels.clone()),
            sent_events: metrics::counter!(SENT_EVENTS, labels.clone()),
            sent_batches: metrics::counter!(SENT_BATCHES, labels.clone()),
            errors: metrics::counter!(ERRORS, labels.clone()),
            call_seconds: metrics::histogram!(CALL_SECONDS, labels.clone()),
            buffer_events: metrics::gauge!(BUFFER_EVENTS, labels.clone()),
            dropped: [
                dropped_with(DropReason::BufferFull),
                dropped_with(DropReason::Error),
                dropped_with(DropReason::UnsupportedKind),
                dropped_with(DropReason::Shutdown),
                dropped_with(DropReason::OutputClosed),
                dropped_with(DropReason::Rejected),
                dropped_with(DropReason::Corrupted),
            ],
        }
    }

    /// The dropped-events counter for `reason`.
    pub fn dropped(&self, reason: DropReason) -> &Counter {
        match reason {
            DropReason::BufferFull => &self.dropped[0],
            DropReason::Error => &self.dropped[1],
            DropReason::UnsupportedKind => &self.dropped[2],
            DropReason::Shutdown => &self.dropped[3],
            DropReason::OutputClosed => &self.dropped[4],
            DropReason::Rejected => &self.dropped[5],
            DropReason::Corrupted => &self.dropped[6],
        }
    }
}

/// The identifying labels of a component's metrics.
pub fn labels(info: &ComponentInfo) -> Vec<Label> {
    vec![
        Label::new("component_kind", info.kind.as_str()),
        Label::new("component_id", info.id.to_string()),
        Label::new("component_type", info.type_name),
    ]
}
