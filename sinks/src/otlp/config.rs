//! The OTLP sink's options, and building the sink from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{BatchConfig, Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::{batch_sink, BoxError, Sink, SinkConfig, SinkContext};

use super::service::OtlpSink;

/// Default endpoint for `protocol = "grpc"`: the collector's standard gRPC port.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default endpoint for `protocol = "http/protobuf"`: the collector's standard HTTP port.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Default largest request, before compression: 4 MiB, the default most
/// gRPC servers (the OpenTelemetry Collector included) accept.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Default `service.name` of events that say nothing about their service.
pub const DEFAULT_SERVICE_NAME: &str = "sonde";

const fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}

/// How requests travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum Protocol {
    /// OTLP/gRPC (HTTP/2), usually port 4317.
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies, usually port 4318: `POST /v1/metrics` …
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// How request bodies are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// gzip: telemetry compresses 5–20×, worth its CPU on a node's uplink.
    #[default]
    Gzip,
    /// Uncompressed.
    None,
}

/// TLS settings, used when the endpoint is `https://`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust, instead of the
    /// system's (`/etc/ssl/certs`). Default: the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS. Needs `key_file`.
    /// Default: none.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`. Default: none.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name to verify the server's certificate against, when it differs from
    /// the endpoint's host (gRPC only). Default: the endpoint's host.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Sends metrics, logs, spans and profiles to an OpenTelemetry collector or
/// backend over OTLP (gRPC or HTTP/protobuf).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// Where to send: `http://host:4317` (gRPC) or `http://host:4318`
    /// (HTTP/protobuf; `/v1/metrics`, `/v1/logs`, `/v1/traces` and
    /// `/v1development/profiles` are appended). `https://` uses TLS.
    /// Default `http://localhost:4317` for gRPC, `http://localhost:4318` for HTTP.
    #[serde(default, with = "sonde_core::config::http_url::option")]
    #[schemars(with = "Option<sonde_core::config::HttpUrl>")]
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Headers sent with every request, e.g. `{ authorization = "Bearer …" }`.
    /// Default: none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `gzip` (default) or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// TLS options for `https://` endpoints. Default: the system's trust
    /// store, no client certificate.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Resource attributes added to everything sent, unless the event carries
    /// the same key (`{ "deployment.environment.name" = "prod" }`). A
    /// `service.name` here names events that have none; otherwise it is
    /// `unknown_service:<process.executable.name>` for process events and
    /// `sonde` for the rest. Default: none.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// Largest request in bytes before compression. A batch that encodes
    /// larger is split into several requests; one event larger than this is
    /// still sent alone. Default 4194304 (4 MiB, the usual gRPC server limit).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
}

impl OtlpSinkConfig {
    /// The endpoint in effect: the configured one or the protocol's default.
    pub fn endpoint(&self) -> &str {
        match (&self.endpoint, self.protocol) {
            (Some(endpoint), _) => endpoint,
            (None, Protocol::Grpc) => DEFAULT_GRPC_ENDPOINT,
            (None, Protocol::HttpProtobuf) => DEFAULT_HTTP_ENDPOINT,
        }
    }
}

impl sonde_core::registry::SinkType for OtlpSinkConfig {
    const NAME: &'static str = "otlp";
}

impl SinkConfig for OtlpSinkConfig {
    fn accepts(&self) -> EventKinds {
        EventKinds::ALL
    }

    /// Each request costs a round trip and a gzip stream's setup, and
    /// compresses better the more points share it: merge up to 1000 events,
    /// waiting at most 1s (the core's defaults), unless `batch { }` says otherwise.
    fn default_batch(&self) -> Option<BatchConfig> {
        Some(BatchConfig::default())
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        check.that(
            self.tls.is_none() || self.endpoint().starts_with("https://"),
            "tls",
            "needs an https:// endpoint",
        );
        check.finish()
    }

    fn build(&self, cx: &SinkContext) -> Result<Sink, BoxError> {
        Ok(batch_sink(OtlpSink::new(self, cx)?))
    }
}
