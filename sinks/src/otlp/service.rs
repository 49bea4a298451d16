//! [`OtlpSink`]: encodes a batch and exports it.
//!
//! It only classifies failures (see [`super::error`]); the core retries
//! retriable ones with backoff under its per-attempt timeout, and drops and
//! counts the batch on permanent ones.

use std::path::Path;

use metrics::{Counter, Label};
use sonde_core::event::{BatchId, EventBatch};
use sonde_core::topology::component_metrics;
use sonde_core::{BatchSink, ComponentInfo, SinkContext, SinkError};

use super::config::{OtlpSinkConfig, Protocol};
use super::encode::{Encoder, Request, Signal};
use super::error::BuildError;
use super::grpc::GrpcTransport;
use super::http::HttpTransport;

/// `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("sonde/", env!("CARGO_PKG_VERSION"));

/// Items (data points, log records, spans, profiles) a server accepted the
/// request of but rejected itself (OTLP partial success), by `signal`.
pub const REJECTED_ITEMS: &str = "sonde_otlp_rejected_items_total";

/// What a server said about a request it accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Items it rejected anyway (partial success); 0 for a full success.
    pub rejected: i64,
    /// Why, when it says.
    pub message: String,
}

/// Reads a PEM file named by a `tls` option.
pub fn read_tls_file(option: &'static str, path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::ReadFile {
        option,
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Debug)]
enum Transport {
    Grpc(GrpcTransport),
    Http(HttpTransport),
}

/// The OTLP sink: concurrent batches share the encoder state, the
/// connection and the counters.
#[derive(Debug)]
pub struct OtlpSink {
    info: ComponentInfo,
    encoder: Encoder,
    transport: Transport,
    /// [`REJECTED_ITEMS`] per signal, in [`Signal::ALL`] order.
    rejected: [Counter; 4],
}

impl OtlpSink {
    /// Builds the sink; connects lazily, on the first batch.
    pub fn new(config: &OtlpSinkConfig, cx: &SinkContext) -> Result<Self, BuildError> {
        let transport = match config.protocol {
            Protocol::Grpc => Transport::Grpc(GrpcTransport::new(config)?),
            Protocol::HttpProtobuf => Transport::Http(HttpTransport::new(config)?),
        };
        let labels = component_metrics::labels(&cx.info);
        let rejected = Signal::ALL.map(|signal| {
            let mut labels: Vec<Label> = labels.clone();
            labels.push(Label::new("signal", signal.as_str()));
            metrics::counter!(REJECTED_ITEMS, labels)
        });
        Ok(OtlpSink {
            info: cx.info.clone(),
            encoder: Encoder::new(&config.resource, cx.global.node_name.clone(), config.max_request_bytes),
            transport,
            rejected,
        })
    }

    /// Sends one request; counts and logs what the server rejected of it,
    /// and returns how many items that was.
    async fn export(&self, request: Request, identity: &BatchHeaders) -> Result<u64, SinkError> {
        let signal = request.signal();
        let items = request.items();
        let accepted = match &self.transport {
            Transport::Grpc(t) => t.send(request, identity).await?,
            Transport::Http(t) => t.send(request, identity).await?,
        };
        if accepted.rejected > 0 || !accepted.message.is_empty() {
            let index = Signal::ALL.iter().position(|s| *s == signal).unwrap_or_default();
            self.rejected[index].increment(accepted.rejected.max(0) as u64);
            // Not an error of the batch: the server kept the rest, and
            // sending the rejected items again would be rejected again.
            tracing::warn!(
                component = %self.info,
                signal = signal.as_str(),
                rejected = accepted.rejected,
                of = items,
                message = %accepted.message,
                "server rejected part of a request"
            );
        }
        Ok(accepted.rejected.max(0) as u64)
    }
}

/// What a request says of the batch it belongs to, in headers (gRPC
/// metadata): `sonde-batch-id` (the same on every retry and redelivery,
/// see [`BatchId`]) and `sonde-batch-part`, the request's place among the
/// batch's requests, so a receiver can recognise what it already has.
#[derive(Clone, Copy, Debug)]
pub struct BatchHeaders {
    /// The batch's identity, when its buffer gave it one.
    pub batch: Option<BatchId>,
    /// The request's place in the batch's requests, from 0.
    pub part: usize,
}

impl BatchHeaders {
    /// The header that carries the part.
    pub const PART_HEADER: &'static str = "sonde-batch-part";

    /// The headers to add: (name, value).
    pub fn headers(&self) -> Option<[(&'static str, String); 2]> {
        let id = self.batch?;
        Some([
            (BatchId::HEADER, id.to_string()),
            (Self::PART_HEADER, self.part.to_string()),
        ])
    }
}

impl BatchSink for OtlpSink {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        // One request per signal (more if a request would be too large),
        // sent in order. A failure fails the whole batch, so a retry may
        // send again what already went through: at-least-once.
        let mut rejected = 0;
        for (part, request) in self.encoder.encode(batch.events()).into_iter().enumerate() {
            let identity = BatchHeaders {
                batch: batch.id(),
                part,
            };
            rejected += self.export(request, &identity).await?;
        }
        // A partial success: the core counts the rest as delivered and
        // these as dropped (`reason="rejected"`), and does not retry.
        if rejected > 0 {
            return Err(SinkError::rejected(
                rejected,
                "the server rejected part of the batch (OTLP partial success)",
            ));
        }
        Ok(())
    }
}
