//! OTLP/HTTP with protobuf bodies: `POST {endpoint}/v1/{signal}`.

use std::io::Write;

use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use sonde_core::SinkError;

use super::config::{Compression, OtlpSinkConfig};
use super::encode::{Request, Signal};
use super::error::{body_text, classify_http, classify_send, BuildError, ExportError};
use super::service::{read_tls_file, Accepted, BatchHeaders, USER_AGENT};

/// The protobuf content type of OTLP/HTTP.
pub const PROTOBUF: &str = "application/x-protobuf";

/// A pooled HTTP client and the four signal URLs.
#[derive(Clone, Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    urls: [String; 4],
    headers: HeaderMap,
    gzip: bool,
}

impl HttpTransport {
    /// A transport to the configured endpoint.
    pub fn new(config: &OtlpSinkConfig) -> Result<Self, BuildError> {
        let base = config.endpoint();
        let invalid = |reason: String| BuildError::Endpoint {
            endpoint: base.to_string(),
            reason,
        };
        let url = reqwest::Url::parse(base).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".into()));
        }
        let https = url.scheme() == "https";
        let base = base.trim_end_matches('/');
        let urls = Signal::ALL.map(|s| format!("{base}{}", s.http_path()));

        let mut builder = reqwest::Client::builder().use_rustls_tls().user_agent(USER_AGENT);
        match (&config.tls, https) {
            (Some(_), false) => return Err(BuildError::Tls("the `tls` block needs an https:// endpoint".into())),
            (Some(tls), true) => {
                if tls.server_name.is_some() {
                    return Err(BuildError::Tls(
                        "server_name is only supported with protocol = \"grpc\"".into(),
                    ));
                }
                if let Some(path) = &tls.ca_file {
                    let pem = read_tls_file("ca_file", path)?;
                    let certificates =
                        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| BuildError::Tls(e.to_string()))?;
                    // A custom CA replaces the system's, as with gRPC.
                    builder = builder.tls_built_in_root_certs(false);
                    for certificate in certificates {
                        builder = builder.add_root_certificate(certificate);
                    }
                }
                match (&tls.cert_file, &tls.key_file) {
                    (Some(cert), Some(key)) => {
                        let mut pem = read_tls_file("cert_file", cert)?;
                        pem.push(b'\n');
                        pem.extend(read_tls_file("key_file", key)?);
                        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| BuildError::Tls(e.to_string()))?;
                        builder = builder.identity(identity);
                    }
                    (None, None) => {}
                    _ => return Err(BuildError::Tls("cert_file and key_file go together".into())),
                }
            }
            (None, _) => {}
        }
        let client = builder.build().map_err(|e| BuildError::Tls(e.to_string()))?;

        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let invalid = |reason: String| BuildError::Header {
                name: name.clone(),
                reason,
            };
            let key = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let value = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
            headers.insert(key, value);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        let gzip = config.compression == Compression::Gzip;
        if gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(HttpTransport {
            client,
            urls,
            headers,
            gzip,
        })
    }

    /// The configured headers and the batch's identity.
    fn headers_for(&self, identity: &BatchHeaders) -> HeaderMap {
        let mut headers = self.headers.clone();
        for (name, value) in identity.headers().into_iter().flatten() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
        headers
    }

    /// Sends one request; `Ok` carries what the server says it rejected.
    pub async fn send(&self, request: Request, identity: &BatchHeaders) -> Result<Accepted, SinkError> {
        let signal = request.signal();
        let name = signal.as_str();
        let mut body = request.into_body();
        if self.gzip {
            body = gzip(&body)
                .map_err(|source| SinkError::permanent(ExportError::Compress { signal: name, source }))?
                .into();
        }
        let url = &self.urls[Signal::ALL.iter().position(|s| *s == signal).unwrap_or_default()];
        let response = self
            .client
            .post(url)
            .headers(self.headers_for(identity))
            .body(body)
            .send()
            .await
            .map_err(|e| classify_send(name, url, e))?;
        let status = response.status();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header(RETRY_AFTER);
        let content_type = header(CONTENT_TYPE).unwrap_or_default();
        let bytes = response.bytes().await.map_err(|e| classify_send(name, url, e))?;
        if !status.is_success() {
            return Err(classify_http(
                name,
                url,
                status.as_u16(),
                retry_after.as_deref(),
                &bytes,
            ));
        }
        if !bytes.is_empty() && !is_protobuf(&content_type) {
            // An HTML page or a JSON API: not a collector, whatever it did
            // with the request.
            return Err(SinkError::permanent(ExportError::NotOtlp {
                signal: name,
                url: url.clone(),
                status: status.as_u16(),
                content_type,
                body: body_text(&bytes),
            }));
        }
        match decode_response(signal, &bytes) {
            Ok(accepted) => Ok(accepted),
            Err(error) => {
                // The server said it took the data (a success status): its
                // answer's only use is to report a partial success, so the
                // data is delivered and the odd answer only reported.
                tracing::warn!(%url, %error, "the server accepted the request but its answer is not an OTLP response");
                Ok(Accepted::default())
            }
        }
    }
}

/// Whether a content type is OTLP/HTTP's protobuf (or unnamed bytes).
fn is_protobuf(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "" | PROTOBUF | "application/protobuf" | "application/octet-stream"
    )
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    // Level 1: telemetry is repetitive (the same keys, names and resources
    // in every point), so the fastest level already shrinks it ~10×, at a
    // fraction of the default level's CPU (zlib-rs; gRPC's gzip is tonic's,
    // at its fixed level 6).
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 8), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// Decodes a success answer's partial-success part (an empty body is a full success).
pub fn decode_response(signal: Signal, bytes: &[u8]) -> Result<Accepted, ExportError> {
    let decode_error = |source| ExportError::Decode {
        signal: signal.as_str(),
        source,
    };
    macro_rules! partial {
        ($response:ident, $count:ident) => {{
            let p = $response::decode(bytes)
                .map_err(decode_error)?
                .partial_success
                .unwrap_or_default();
            Accepted {
                rejected: p.$count,
                message: p.error_message,
            }
        }};
    }
    Ok(match signal {
        Signal::Metrics => partial!(ExportMetricsServiceResponse, rejected_data_points),
        Signal::Logs => partial!(ExportLogsServiceResponse, rejected_log_records),
        Signal::Traces => partial!(ExportTraceServiceResponse, rejected_spans),
        Signal::Profiles => partial!(ExportProfilesServiceResponse, rejected_profiles),
    })
}
