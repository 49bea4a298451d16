//! [`Span`]: a request/response pair seen on the wire (protocol tracing).

use serde::Serialize;

use super::{Attributes, SharedStr, Timestamp};

/// The role of the traced process in the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// The process sent the request.
    Client,
    /// The process answered the request.
    Server,
    /// Neither (an internal operation).
    Internal,
}

/// Outcome of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum SpanStatus {
    /// Not classified.
    Unset,
    /// Succeeded.
    Ok,
    /// Failed, with the protocol's reason (HTTP 503, Redis `-ERR …`).
    Error {
        /// What the peer said.
        message: SharedStr,
    },
}

/// One traced request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Span {
    /// W3C trace id (16 bytes); random when the wire carried none.
    #[serde(serialize_with = "hex")]
    pub trace_id: [u8; 16],
    /// Span id (8 bytes).
    #[serde(serialize_with = "hex")]
    pub span_id: [u8; 8],
    /// Parent span id, when the wire carried trace context.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "hex_opt")]
    pub parent_span_id: Option<[u8; 8]>,
    /// Operation name (`GET /api`, `redis SET`).
    pub name: SharedStr,
    /// Client or server side. Serialized as `span_kind`: events carry their
    /// own `kind` (`"span"`) in JSON.
    #[serde(rename = "span_kind")]
    pub kind: SpanKind,
    /// When the request started.
    pub start: Timestamp,
    /// When the response ended.
    pub end: Timestamp,
    /// Outcome.
    pub status: SpanStatus,
    /// Protocol fields (`http.request.method`, `db.statement` …).
    pub fields: Attributes,
    /// Where it came from (pid, cgroup, pod, node).
    pub attributes: Attributes,
}

fn hex<S: serde::Serializer, const N: usize>(bytes: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.serialize_str(&text)
}

fn hex_opt<S: serde::Serializer>(bytes: &Option<[u8; 8]>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => hex(b, s),
        None => s.serialize_none(),
    }
}
