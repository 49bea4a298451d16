//! `sink "otlp"`: metrics, logs, spans and profiles to any OpenTelemetry
//! collector or backend, over OTLP/gRPC or OTLP/HTTP with protobuf bodies.
//!
//! - [`config`]: the options (endpoint, protocol, headers, gzip, TLS, extra
//!   resource attributes, request size);
//! - [`encode`]: events → export requests, grouped per resource and scope,
//!   resource attributes after the semantic conventions;
//! - [`service`]: the sink, with [`grpc`] and [`http`] transports (gRPC
//!   sends encoded metrics as they are, through `encoded`'s codec);
//! - [`error`]: which failures the core retries — gRPC UNAVAILABLE,
//!   RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED (and the specification's other
//!   transient codes), HTTP 429/502/503/504 and connection failures, with the
//!   server's RetryInfo / Retry-After as the delay; everything else drops the
//!   batch, counted by the core. Partial successes are counted in
//!   [`service::REJECTED_ITEMS`].
//!
//! The core merges queued batches before the sink (`batch { }`; the OTLP
//! sink's default is 1000 events or 1s); a batch that would make a request
//! above `max_request_bytes` is split into several.

pub mod config;
pub mod encode;
mod encoded;
pub mod error;
pub mod grpc;
pub mod http;
pub mod service;

pub use config::{Compression, OtlpSinkConfig, Protocol, TlsConfig};
pub use service::{OtlpSink, REJECTED_ITEMS};

#[cfg(test)]
mod tests;
