//! OTLP/gRPC: the four collector services over one tonic channel.

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_client::ProfilesServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use sonde_core::SinkError;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::config::{Compression, OtlpSinkConfig};
use super::encode::Request;
use super::encoded::EncodedCodec;
use super::error::{classify_grpc, BuildError};
use super::service::{read_tls_file, Accepted, BatchHeaders, USER_AGENT};

/// The gRPC method of a metrics export.
const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Clients of the four services, sharing one HTTP/2 connection.
#[derive(Clone, Debug)]
pub struct GrpcTransport {
    channel: Channel,
    headers: MetadataMap,
    gzip: bool,
    /// The configured endpoint, for error messages.
    endpoint: String,
}

impl GrpcTransport {
    /// A transport to the configured endpoint. Connects lazily, so that the
    /// agent starts while the collector is down, and reconnects by itself.
    pub fn new(config: &OtlpSinkConfig) -> Result<Self, BuildError> {
        let url = config.endpoint();
        let invalid = |reason: String| BuildError::Endpoint {
            endpoint: url.to_string(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| invalid(e.to_string()))?
            .user_agent(USER_AGENT)
            .map_err(|e| invalid(e.to_string()))?
            .tcp_keepalive(Some(std::time::Duration::from_secs(60)));
        let https = url.starts_with("https://");
        match (&config.tls, https) {
            (Some(_), false) => {
                return Err(BuildError::Tls("the `tls` block needs an https:// endpoint".into()));
            }
            (tls, true) => {
                let tls = tls.clone().unwrap_or_default();
                let mut client = ClientTlsConfig::new();
                client = match &tls.ca_file {
                    Some(path) => client.ca_certificate(Certificate::from_pem(read_tls_file("ca_file", path)?)),
                    None => client.with_native_roots(),
                };
                match (&tls.cert_file, &tls.key_file) {
                    (Some(cert), Some(key)) => {
                        let identity =
                            Identity::from_pem(read_tls_file("cert_file", cert)?, read_tls_file("key_file", key)?);
                        client = client.identity(identity);
                    }
                    (None, None) => {}
                    _ => return Err(BuildError::Tls("cert_file and key_file go together".into())),
                }
                if let Some(name) = &tls.server_name {
                    client = client.domain_name(name.clone());
                }
                endpoint = endpoint
                    .tls_config(client)
                    .map_err(|e| BuildError::Tls(e.to_string()))?;
            }
            (None, false) => {}
        }
        let mut headers = MetadataMap::new();
        for (name, value) in &config.headers {
            let invalid = |reason: String| BuildError::Header {
                name: name.clone(),
                reason,
            };
            let key =
                MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let value = MetadataValue::try_from(value.as_str()).map_err(|e| invalid(e.to_string()))?;
            headers.insert(key, value);
        }
        Ok(GrpcTransport {
            channel: endpoint.connect_lazy(),
            headers,
            gzip: config.compression == Compression::Gzip,
            endpoint: url.to_string(),
        })
    }

    fn request<T>(&self, message: T, identity: &BatchHeaders) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.headers.clone();
        for (name, value) in identity.headers().into_iter().flatten() {
            if let Ok(value) = MetadataValue::try_from(value.as_str()) {
                request.metadata_mut().insert(MetadataKey::from_static(name), value);
            }
        }
        request
    }

    /// Sends one request; `Ok` carries what the server says it rejected.
    pub async fn send(&self, request: Request, identity: &BatchHeaders) -> Result<Accepted, SinkError> {
        let signal = request.signal().as_str();
        let failed = |status: tonic::Status| classify_grpc(signal, &self.endpoint, &status);
        // Clients are cheap handles on the shared channel.
        macro_rules! call {
            ($client:ident, $message:expr, $count:ident) => {{
                let mut client = $client::new(self.channel.clone());
                if self.gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                let response = client
                    .export(self.request($message, identity))
                    .await
                    .map_err(failed)?;
                let partial = response.into_inner().partial_success.unwrap_or_default();
                Accepted {
                    rejected: partial.$count,
                    message: partial.error_message,
                }
            }};
        }
        Ok(match request {
            Request::Metrics(m) => {
                // Metrics are encoded already: sent as they are, through
                // a codec that writes the bytes (the generated client
                // would want the structs).
                let mut grpc = tonic::client::Grpc::new(self.channel.clone());
                if self.gzip {
                    grpc = grpc.send_compressed(CompressionEncoding::Gzip);
                }
                grpc.ready()
                    .await
                    .map_err(|e| failed(tonic::Status::unknown(format!("Service was not ready: {e}"))))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(METRICS_EXPORT);
                let codec = EncodedCodec::<ExportMetricsServiceResponse>::default();
                let response = grpc
                    .unary(self.request(m.body, identity), path, codec)
                    .await
                    .map_err(failed)?;
                let partial = response.into_inner().partial_success.unwrap_or_default();
                Accepted {
                    rejected: partial.rejected_data_points,
                    message: partial.error_message,
                }
            }
            Request::Logs(m) => call!(LogsServiceClient, m, rejected_log_records),
            Request::Traces(m) => call!(TraceServiceClient, m, rejected_spans),
            Request::Profiles(m) => call!(ProfilesServiceClient, m, rejected_profiles),
        })
    }
}
