//! What the engine lost or refused, counted, and exported as cumulative
//! `sonde_protocols_*` counters (the source puts them in the agent's
//! internal metrics: `protocols::telemetry`).

use sonde_core::event::{keys, Attributes, Metric, SharedStr, Timestamp};

/// Counter of stream gaps (bytes the kernel did not capture, or chunks
/// lost), by `sonde.protocols.reason`.
pub const GAPS: &str = "sonde_protocols_gaps_total";
/// Counter of messages, bytes or connections dropped, by `sonde.protocols.reason`.
pub const DROPPED: &str = "sonde_protocols_dropped_total";
/// Gauge of bytes the engine holds.
pub const MEMORY: &str = "sonde_protocols_memory_bytes";
/// Gauge of connections the engine tracks.
pub const CONNECTIONS: &str = "sonde_protocols_connections";
/// Attribute: why something was counted.
pub const REASON: &str = "sonde.protocols.reason";

/// The engine's running totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Positions jumped: bytes moved by a syscall but not captured, or
    /// chunks never seen, where they broke a message.
    pub gaps: u64,
    /// Uncaptured bytes skipped inside a body whose length was known
    /// (harmless: the message still pairs).
    pub skipped_body_gaps: u64,
    /// Chunks seen twice (or overlapping what was already delivered).
    pub duplicates: u64,
    /// Bytes that did not parse as the connection's protocol.
    pub parse_errors: u64,
    /// Responses with no request to pair with (joined mid-connection).
    pub orphan_responses: u64,
    /// Requests that never got a response (closed, expired, lost in a gap).
    pub unanswered_requests: u64,
    /// Messages whose head outgrew the per-connection buffer.
    pub truncated: u64,
    /// Bytes or connections refused because of the global memory cap.
    pub memory_drops: u64,
    /// Connections forgotten after the idle timeout.
    pub expired_connections: u64,
    /// Connections whose first bytes matched no enabled protocol.
    pub unknown_protocol: u64,
    /// Connections whose first bytes looked like a protocol that its
    /// parser then refused (false positives of detection).
    pub misdetected: u64,
    /// RED or service-graph points whose series did not fit `max_series`.
    pub series_dropped: u64,
    /// HTTP/2 header fields that could not be decoded (their HPACK
    /// dynamic-table entry predates the agent, or was lost): their spans
    /// say `_OTHER` or leave the field out instead of guessing.
    pub unknown_header_fields: u64,
}

impl Counters {
    /// The counters (and the two gauges) as metrics stamped `now`.
    pub fn to_metrics(&self, memory: usize, connections: usize, node: &SharedStr, now: Timestamp) -> Vec<Metric> {
        let base = Attributes::new().with(keys::node(), node.clone());
        let point = |metric: Metric, reason: Option<&'static str>| {
            let mut attributes = base.clone();
            if let Some(reason) = reason {
                attributes.insert(REASON, reason);
            }
            metric.with_attributes(attributes).with_timestamp(now)
        };
        let gaps = [("uncaptured", self.gaps), ("skipped_body", self.skipped_body_gaps)];
        let dropped = [
            ("duplicate", self.duplicates),
            ("parse_error", self.parse_errors),
            ("orphan_response", self.orphan_responses),
            ("unanswered_request", self.unanswered_requests),
            ("connection_buffer_full", self.truncated),
            ("memory_cap", self.memory_drops),
            ("idle_connection", self.expired_connections),
            ("unknown_protocol", self.unknown_protocol),
            ("misdetected", self.misdetected),
            ("series_cap", self.series_dropped),
            ("hpack_unknown", self.unknown_header_fields),
        ];
        let mut out = Vec::with_capacity(gaps.len() + dropped.len() + 2);
        for (reason, value) in gaps {
            out.push(point(
                Metric::counter(GAPS, value as f64)
                    .with_description("Gaps in captured connection streams.")
                    .with_unit("{gap}"),
                Some(reason),
            ));
        }
        for (reason, value) in dropped {
            out.push(point(
                Metric::counter(DROPPED, value as f64)
                    .with_description("What the protocol engine dropped, by reason.")
                    .with_unit("{item}"),
                Some(reason),
            ));
        }
        out.push(point(
            Metric::gauge(MEMORY, memory as f64)
                .with_description("Bytes the protocol engine holds.")
                .with_unit("By"),
            None,
        ));
        out.push(point(
            Metric::gauge(CONNECTIONS, connections as f64)
                .with_description("Connections the protocol engine tracks.")
                .with_unit("{connection}"),
            None,
        ));
        out
    }
}
