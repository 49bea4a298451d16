//! A disk buffer's own metrics, labelled like its sink's.
//!
//! They close the account of the buffer: over one run,
//! `recovered + written = acked + dropped{reason="corrupted"} + sonde_buffer_events`
//! (events), where `acked` counts what the sink delivered or dropped and
//! counted under its own `sonde_component_dropped_events_total` reasons.

use metrics::{Counter, Gauge, Label};

/// Events unacknowledged in the buffer (written, not yet delivered).
pub const EVENTS: &str = "sonde_buffer_events";
/// Bytes of the buffer's segment files.
pub const BYTES: &str = "sonde_buffer_bytes";
/// The buffer's `max_size`.
pub const MAX_BYTES: &str = "sonde_buffer_max_bytes";
/// Events found in the buffer when it was opened (left by an earlier run).
pub const RECOVERED: &str = "sonde_buffer_recovered_events_total";
/// Events written to the buffer.
pub const WRITTEN: &str = "sonde_buffer_written_events_total";
/// Events acknowledged by the sink and freed.
pub const ACKED: &str = "sonde_buffer_acked_events_total";
/// Events handed to the sink again after a restart (possible duplicates).
pub const REDELIVERED: &str = "sonde_buffer_redelivered_events_total";
/// Damaged records skipped.
pub const CORRUPTED_RECORDS: &str = "sonde_buffer_corrupted_records_total";
/// Failed writes (a full disk): each is retried while `when_full = "block"`.
pub const WRITE_ERRORS: &str = "sonde_buffer_write_errors_total";

/// Handles to one buffer's metrics.
#[derive(Clone, Debug)]
pub struct BufferMetrics {
    /// [`EVENTS`].
    pub events: Gauge,
    /// [`BYTES`].
    pub bytes: Gauge,
    /// [`MAX_BYTES`].
    pub max_bytes: Gauge,
    /// [`RECOVERED`].
    pub recovered_events: Counter,
    /// [`WRITTEN`].
    pub written_events: Counter,
    /// [`ACKED`].
    pub acked_events: Counter,
    /// [`REDELIVERED`].
    pub redelivered_events: Counter,
    /// [`CORRUPTED_RECORDS`].
    pub corrupted_records: Counter,
    /// Events of damaged records skipped (when their header was intact):
    /// the sink's `sonde_component_dropped_events_total{reason="corrupted"}`.
    pub corrupted_events: Counter,
    /// [`WRITE_ERRORS`].
    pub write_errors: Counter,
}

impl BufferMetrics {
    /// Registers the metrics under `labels` (the sink's); damaged events
    /// are counted in `corrupted_events`.
    pub fn new(labels: Vec<Label>, corrupted_events: Counter) -> Self {
        BufferMetrics {
            events: metrics::gauge!(EVENTS, labels.clone()),
            bytes: metrics::gauge!(BYTES, labels.clone()),
            max_bytes: metrics::gauge!(MAX_BYTES, labels.clone()),
            recovered_events: metrics::counter!(RECOVERED, labels.clone()),
            written_events: metrics::counter!(WRITTEN, labels.clone()),
            acked_events: metrics::counter!(ACKED, labels.clone()),
            redelivered_events: metrics::counter!(REDELIVERED, labels.clone()),
            corrupted_records: metrics::counter!(CORRUPTED_RECORDS, labels.clone()),
            corrupted_events,
            write_errors: metrics::counter!(WRITE_ERRORS, labels),
        }
    }

    /// Metrics that go nowhere (tests, `sonde buffer check`).
    pub fn noop() -> Self {
        BufferMetrics {
            events: Gauge::noop(),
            bytes: Gauge::noop(),
            max_bytes: Gauge::noop(),
            recovered_events: Counter::noop(),
            written_events: Counter::noop(),
            acked_events: Counter::noop(),
            redelivered_events: Counter::noop(),
            corrupted_records: Counter::noop(),
            corrupted_events: Counter::noop(),
            write_errors: Counter::noop(),
        }
    }
}
