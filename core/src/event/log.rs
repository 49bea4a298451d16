//! [`Log`]: a structured record — a network flow, a TCP state change, a
//! process exec, an HTTP request, or a line for humans.

use serde::Serialize;

use super::{Attributes, SharedStr, Timestamp};

/// Log severity, ordered from least to most severe (OpenTelemetry's levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Fine-grained diagnostics.
    Debug,
    /// A normal event.
    Info,
    /// Something unexpected that did not fail.
    Warn,
    /// A failure.
    Error,
}

/// One structured record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Log {
    /// What kind of record this is (`net.flow`, `tcp.state_change`), so
    /// consumers can route on it without parsing the body.
    pub name: SharedStr,
    /// How severe.
    pub severity: Severity,
    /// Human-readable text, when there is some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<SharedStr>,
    /// The record's structured content (the flow's bytes, ports, duration …).
    pub fields: Attributes,
    /// Where it came from (pid, cgroup, pod, node).
    pub attributes: Attributes,
    /// When it happened.
    pub timestamp: Timestamp,
}

impl Log {
    /// An info-level record named `name`, stamped now.
    pub fn new(name: impl Into<SharedStr>) -> Self {
        Log {
            name: name.into(),
            severity: Severity::Info,
            message: None,
            fields: Attributes::new(),
            attributes: Attributes::new(),
            timestamp: Timestamp::now(),
        }
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<SharedStr>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
}
