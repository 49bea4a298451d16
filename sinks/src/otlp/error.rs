//! What can go wrong, building the sink and exporting, and which export
//! failures are worth retrying.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use crate::causes::causes;
use sonde_core::SinkError;
use tonic::Code;
use tonic_types::StatusExt;

/// Why the sink could not be built from its options.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The endpoint is not a usable URL.
    #[error("invalid endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// What was configured.
        endpoint: String,
        /// Why it is unusable.
        reason: String,
    },
    /// A header name or value cannot go on the wire.
    #[error("invalid header `{name}`: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A TLS file could not be read.
    #[error("cannot read tls.{option} `{path}`: {source}")]
    ReadFile {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS options do not fit together, or a certificate is unusable.
    #[error("tls: {0}")]
    Tls(String),
}

/// Why one export request failed. Every message names where the request
/// went and the deepest cause known (a refused connection, the host a DNS
/// lookup could not resolve), because that is what a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The gRPC server answered with an error status (or none could be reached).
    #[error("OTLP/gRPC {signal} export to {endpoint} failed: {code:?}: {message}{hint}")]
    Grpc {
        /// The signal.
        signal: &'static str,
        /// Where it went.
        endpoint: String,
        /// The gRPC status code.
        code: Code,
        /// The status message, with its causes.
        message: String,
        /// What to try, when the failure suggests it (empty otherwise).
        hint: &'static str,
    },
    /// The HTTP server answered with an error status.
    #[error("OTLP/HTTP {signal} export to {url} failed: status {status}: {body}")]
    HttpStatus {
        /// The signal.
        signal: &'static str,
        /// Where it went.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The HTTP request could not be sent or its answer not read.
    #[error("OTLP/HTTP {signal} export to {url} failed: {cause}")]
    HttpSend {
        /// The signal.
        signal: &'static str,
        /// Where it went.
        url: String,
        /// What reqwest said, with every cause under it.
        cause: String,
    },
    /// A success status whose body is not an OTLP response at all: the
    /// endpoint is some other HTTP server.
    #[error(
        "OTLP/HTTP {signal} export to {url}: the server answered {status} with `{content_type}`, not an OTLP \
         response ({body}); is the endpoint an OTLP/HTTP receiver? (the sink appends /v1/<signal> to `endpoint`)"
    )]
    NotOtlp {
        /// The signal.
        signal: &'static str,
        /// Where it went.
        url: String,
        /// The success status.
        status: u16,
        /// The answer's content type.
        content_type: String,
        /// The start of the answer.
        body: String,
    },
    /// A success answer that is not an export response.
    #[error("cannot decode the OTLP {signal} response: {source}")]
    Decode {
        /// The signal.
        signal: &'static str,
        /// What prost said.
        source: prost::DecodeError,
    },
    /// Compressing the request failed.
    #[error("cannot gzip the OTLP {signal} request: {source}")]
    Compress {
        /// The signal.
        signal: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether a gRPC status is worth retrying: the OTLP specification's
/// retryable codes, plus RESOURCE_EXHAUSTED (a collector's memory limiter
/// answers it and recovers).
pub fn grpc_code_retriable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::OutOfRange
            | Code::DataLoss
    )
}

/// The start of a response body as one readable line.
pub fn body_text(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Set on a gRPC failure that says the server speaks HTTP/1 (an OTLP/HTTP
/// port), not gRPC.
const HINT_HTTP: &str =
    " (the server does not speak gRPC: if it is an OTLP/HTTP endpoint, usually port 4318, set `protocol = \"http/protobuf\"`)";

/// Set on a gRPC failure where the server closed the connection before
/// answering: what an HTTP/1 server does with HTTP/2, though not only it.
const HINT_CLOSED: &str =
    " (the server closed the connection without a gRPC answer: if it is an OTLP/HTTP endpoint, usually port 4318, set `protocol = \"http/protobuf\"`)";

/// Classifies a gRPC error status, honouring the server's `RetryInfo`.
///
/// A status tonic made itself from a transport failure (it carries the
/// failure as its source; a server's status never does) is retriable
/// whatever its code: a connection reset mid-request reads as `Unknown`,
/// and the server may never have seen the request.
pub fn classify_grpc(signal: &'static str, endpoint: &str, status: &tonic::Status) -> SinkError {
    let transport_failure = std::error::Error::source(status).is_some();
    let mut message = status.message().to_string();
    if let Some(source) = std::error::Error::source(status) {
        let chain = causes(source);
        if !message.contains(&chain) {
            message = if message.is_empty() {
                chain
            } else {
                format!("{message}: {chain}")
            };
        }
    }
    let lower = message.to_ascii_lowercase();
    let speaks_http1 = lower.contains("h2 protocol error")
        || lower.contains("http2 error")
        || lower.contains("frame with invalid size")
        || lower.contains("invalid http version");
    let error = ExportError::Grpc {
        signal,
        endpoint: endpoint.to_string(),
        code: status.code(),
        message,
        hint: if speaks_http1 {
            HINT_HTTP
        } else if transport_failure && lower.contains("connection closed") {
            HINT_CLOSED
        } else {
            ""
        },
    };
    if transport_failure || grpc_code_retriable(status.code()) {
        SinkError::Retriable {
            source: error.into(),
            retry_after: status.get_details_retry_info().and_then(|info| info.retry_delay),
        }
    } else {
        SinkError::permanent(error)
    }
}

/// Whether an HTTP status is worth retrying (OTLP/HTTP specification).
pub fn http_status_retriable(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A `Retry-After` header value: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

/// Classifies an HTTP error status.
pub fn classify_http(
    signal: &'static str,
    url: &str,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> SinkError {
    // OTLP servers answer a google.rpc.Status in protobuf; its message is
    // readable text among the bytes, enough for a log line.
    let error = ExportError::HttpStatus {
        signal,
        url: url.to_string(),
        status,
        body: body_text(body),
    };
    if http_status_retriable(status) {
        SinkError::Retriable {
            source: error.into(),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
        }
    } else {
        SinkError::permanent(error)
    }
}

/// Classifies a failure to send an HTTP request: the server may be down or
/// restarting, which is worth retrying; a request reqwest cannot build is not.
pub fn classify_send(signal: &'static str, url: &str, error: reqwest::Error) -> SinkError {
    let retriable = error.is_connect() || error.is_timeout() || error.is_request() || error.is_body();
    // reqwest's own message names the URL with a path; say it once.
    let error = ExportError::HttpSend {
        signal,
        url: url.to_string(),
        cause: causes(&error.without_url()),
    };
    if retriable {
        SinkError::retriable(error)
    } else {
        SinkError::permanent(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_classified_and_retry_info_honoured() {
        use tonic_types::ErrorDetails;
        let retriable = |status: tonic::Status| match classify_grpc("metrics", "http://c:4317", &status) {
            SinkError::Retriable { retry_after, .. } => Some(retry_after),
            SinkError::Permanent { .. } | SinkError::Rejected { .. } => None,
        };
        assert_eq!(retriable(tonic::Status::unavailable("down")), Some(None));
        assert_eq!(retriable(tonic::Status::deadline_exceeded("slow")), Some(None));
        assert_eq!(retriable(tonic::Status::invalid_argument("bad")), None);
        assert_eq!(retriable(tonic::Status::unauthenticated("who")), None);
        // What tonic reports when the connection breaks mid-request.
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let broken = tonic::Status::from_error(Box::new(reset));
        assert_eq!(broken.code(), tonic::Code::Unknown);
        assert_eq!(retriable(broken), Some(None));
        let details = ErrorDetails::with_retry_info(Some(Duration::from_secs(3)));
        let status = tonic::Status::with_error_details(tonic::Code::ResourceExhausted, "memory limit", details);
        assert_eq!(retriable(status), Some(Some(Duration::from_secs(3))));
    }

    #[test]
    fn a_transport_failure_names_the_endpoint_and_its_cause() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let status = tonic::Status::from_error(Box::new(refused));
        let message = classify_grpc("logs", "http://127.0.0.1:9", &status).to_string();
        assert!(message.contains("http://127.0.0.1:9"), "{message}");
        assert!(message.contains("Connection refused"), "{message}");
        let h2 = std::io::Error::other("h2 protocol error: http2 error");
        let message = classify_grpc("logs", "http://c:4318", &tonic::Status::from_error(Box::new(h2))).to_string();
        assert!(message.contains("protocol = \"http/protobuf\""), "{message}");
        let closed = std::io::Error::other("transport error: connection closed");
        let message = classify_grpc("logs", "http://c:4318", &tonic::Status::from_error(Box::new(closed))).to_string();
        assert!(
            message.contains("closed the connection without a gRPC answer"),
            "{message}"
        );
        // A server's own status is no transport failure: no hint.
        let status = tonic::Status::unavailable("connection closed by peer");
        assert!(!classify_grpc("logs", "http://c:4317", &status)
            .to_string()
            .contains("protocol"));
    }

    #[test]
    fn http_statuses_are_classified_and_retry_after_honoured() {
        let retriable = |status, after| match classify_http("logs", "http://c:4318/v1/logs", status, after, b"") {
            SinkError::Retriable { retry_after, .. } => Some(retry_after),
            SinkError::Permanent { .. } | SinkError::Rejected { .. } => None,
        };
        for status in [429, 502, 503, 504] {
            assert_eq!(retriable(status, None), Some(None), "{status}");
        }
        for status in [400, 401, 403, 404, 413, 500] {
            assert_eq!(retriable(status, None), None, "{status}");
        }
        assert_eq!(retriable(503, Some("7")), Some(Some(Duration::from_secs(7))));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
