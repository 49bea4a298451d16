//! Events → OTLP export requests, one kind of request per signal.
//!
//! Events are grouped per resource (the semantic-convention attributes
//! `host.*`, `process.*`, `container.*`, `k8s.*`, `service.*` … of the event)
//! and per scope (the producing component, `sonde.component.id`); the rest
//! of an event's attributes stay on its data point, record or span.

mod common;
pub mod logs;
pub mod metrics;
pub mod profiles;
pub mod traces;
mod wire;

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sonde_core::event::{Event, SharedStr, Timestamp};

pub use common::{is_resource_key, ResourceDefaults, SCOPE_NAME, SERVICE_NAME};
pub use metrics::{EncodedMetrics, StartTimes};

/// The four OTLP signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Metrics.
    Metrics,
    /// Logs.
    Logs,
    /// Traces (spans).
    Traces,
    /// Profiles (development-stage).
    Profiles,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 4] = [Signal::Metrics, Signal::Logs, Signal::Traces, Signal::Profiles];

    /// Lowercase name, used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Traces => "traces",
            Signal::Profiles => "profiles",
        }
    }

    /// The OTLP/HTTP path, appended to the endpoint.
    pub fn http_path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
            Signal::Traces => "/v1/traces",
            Signal::Profiles => "/v1development/profiles",
        }
    }
}

/// One export request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Metric data points, encoded.
    Metrics(EncodedMetrics),
    /// Log records.
    Logs(ExportLogsServiceRequest),
    /// Spans.
    Traces(ExportTraceServiceRequest),
    /// Profiles.
    Profiles(ExportProfilesServiceRequest),
}

impl Request {
    /// Its signal.
    pub fn signal(&self) -> Signal {
        match self {
            Request::Metrics(_) => Signal::Metrics,
            Request::Logs(_) => Signal::Logs,
            Request::Traces(_) => Signal::Traces,
            Request::Profiles(_) => Signal::Profiles,
        }
    }

    /// The items a partial-success answer counts: data points, log records,
    /// spans or profiles.
    pub fn items(&self) -> usize {
        match self {
            Request::Metrics(r) => r.points,
            Request::Logs(r) => logs::records(r),
            Request::Traces(r) => traces::spans(r),
            Request::Profiles(r) => profiles::profiles(r),
        }
    }

    /// Size of the protobuf encoding, before compression.
    pub fn encoded_len(&self) -> usize {
        match self {
            Request::Metrics(r) => r.body.len(),
            Request::Logs(r) => r.encoded_len(),
            Request::Traces(r) => r.encoded_len(),
            Request::Profiles(r) => r.encoded_len(),
        }
    }

    /// The protobuf encoding (metrics are encoded already: no copy).
    pub fn into_body(self) -> bytes::Bytes {
        match self {
            Request::Metrics(r) => r.body,
            Request::Logs(r) => r.encode_to_vec().into(),
            Request::Traces(r) => r.encode_to_vec().into(),
            Request::Profiles(r) => r.encode_to_vec().into(),
        }
    }
}

/// Turns batches into requests. Shared by every clone of the sink: it holds
/// the start times of the sink's sums and histograms.
#[derive(Debug)]
pub struct Encoder {
    defaults: ResourceDefaults,
    starts: StartTimes,
    max_request_bytes: usize,
}

impl Encoder {
    /// An encoder adding `resource` to every resource, naming hosts `host_name`
    /// by default, and splitting requests above `max_request_bytes`.
    pub fn new(resource: &BTreeMap<String, String>, host_name: SharedStr, max_request_bytes: usize) -> Self {
        Encoder {
            defaults: ResourceDefaults::new(resource, host_name),
            starts: StartTimes::new(Timestamp::now()),
            max_request_bytes: max_request_bytes.max(1),
        }
    }

    /// The requests for `events`: per signal, one request, or several when
    /// one would exceed the size limit.
    pub fn encode(&self, events: &[Event]) -> Vec<Request> {
        let (mut m, mut l, mut t, mut p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for event in events {
            match event {
                Event::Metric(x) => m.push(x),
                Event::Log(x) => l.push(&**x),
                Event::Span(x) => t.push(&**x),
                Event::Profile(x) => p.push(&**x),
            }
        }
        let mut out = Vec::new();
        let limit = self.max_request_bytes;
        let d = &self.defaults;
        split(&m, limit, &mut out, &|s| {
            Request::Metrics(metrics::encode(s, d, &self.starts))
        });
        split(&l, limit, &mut out, &|s| Request::Logs(logs::encode(s, d)));
        split(&t, limit, &mut out, &|s| Request::Traces(traces::encode(s, d)));
        split(&p, limit, &mut out, &|s| Request::Profiles(profiles::encode(s, d)));
        out
    }
}

/// Encodes `items` as one request, or halves them until each request fits
/// `limit` (a single item is sent whatever its size: the server decides).
fn split<T>(items: &[&T], limit: usize, out: &mut Vec<Request>, encode: &dyn Fn(&[&T]) -> Request) {
    if items.is_empty() {
        return;
    }
    let request = encode(items);
    if items.len() == 1 || request.encoded_len() <= limit {
        out.push(request);
        return;
    }
    let (a, b) = items.split_at(items.len() / 2);
    split(a, limit, out, encode);
    split(b, limit, out, encode);
}
