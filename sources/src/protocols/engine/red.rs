//! RED metrics (rate, errors, duration) and the service graph, added up
//! from every span and exported as cumulative points.
//!
//! - `http.server.request.duration` and `http.client.request.duration`
//!   (seconds, the OpenTelemetry semantic-convention names and bucket
//!   boundaries) by method, route, status code, `error.type`, the peer
//!   service (`server.address` and `server.port` of client spans) and the
//!   process attributes `pod_enrich` completes. The Prometheus sink exposes
//!   them as `http_server_request_duration_seconds_{bucket,sum,count}`.
//! - `rpc.server.call.duration` and `rpc.client.call.duration` (seconds,
//!   the same boundaries) by `rpc.service`, `rpc.method` and
//!   `rpc.grpc.status_code`: `rpc_server_call_duration_seconds` there.
//! - `db.client.operation.duration` by `db.system.name`,
//!   `db.operation.name`, `db.namespace`, `db.response.status_code` and
//!   `error.type`; the database's own side (a server process on this node)
//!   as [`DB_SERVER_DURATION`], which the conventions do not name.
//! - `dns.lookup.duration` by `dns.question.name`, type and `error.type`
//!   (the response code when not `NOERROR`); a resolver on this node as
//!   [`DNS_SERVER_DURATION`].
//! - The service graph, named like `net_flows`' service map: per (process
//!   on this node, peer address, service port) and side
//!   (`sonde.flow.direction`), [`GRAPH_REQUESTS`], [`GRAPH_FAILED`] and
//!   [`GRAPH_DURATION`].

use foldhash::{HashMap, HashMapExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sonde_core::event::{Attributes, Histogram, Metric, SharedStr, Temporality, Timestamp};

use super::super::model::ConnInfo;
use super::counters::Counters;
use super::span::{process_attributes, Labels, Outcome};
use super::strings::Strings;

/// Histogram of server request durations.
pub const SERVER_DURATION: &str = "http.server.request.duration";
/// Histogram of client request durations.
pub const CLIENT_DURATION: &str = "http.client.request.duration";
/// Histogram of database statements, seen from the client.
pub const DB_CLIENT_DURATION: &str = "db.client.operation.duration";
/// Histogram of database statements, seen from the database server.
pub const DB_SERVER_DURATION: &str = "sonde.db.server.operation.duration";
/// Histogram of DNS lookups, seen from the resolving process.
pub const DNS_LOOKUP_DURATION: &str = "dns.lookup.duration";
/// Histogram of DNS queries, seen from a DNS server on this node.
pub const DNS_SERVER_DURATION: &str = "sonde.dns.server.request.duration";
/// Histogram of gRPC calls served (seconds: the conventions' current
/// name, which replaced `rpc.server.duration` in milliseconds).
pub const RPC_SERVER_DURATION: &str = "rpc.server.call.duration";
/// Histogram of gRPC calls made (seconds).
pub const RPC_CLIENT_DURATION: &str = "rpc.client.call.duration";
/// Counter of requests between two services.
pub const GRAPH_REQUESTS: &str = "sonde.service_graph.requests";
/// Counter of failed requests between two services.
pub const GRAPH_FAILED: &str = "sonde.service_graph.failed_requests";
/// Histogram of request durations between two services.
pub const GRAPH_DURATION: &str = "sonde.service_graph.request.duration";
/// Attribute of the graph: which end saw the request (`client`, `server`).
pub const SIDE: &str = "sonde.flow.direction";
/// The OpenTelemetry semantic conventions' advice for HTTP and RPC durations.
pub const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The OpenTelemetry semantic conventions' advice for database (and, by
/// sonde's choice, DNS) durations.
pub const DB_BOUNDS: [f64; 9] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// A RED series' identity, typed (hashing it allocates nothing); its
/// attributes are built once, when the series is new. The process name is
/// left out: a pid has one name while it lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct RedKey {
    server: bool,
    labels: Labels,
    error: bool,
    service: Option<SocketAddr>,
    pid: u32,
    cgroup: u64,
}

impl RedKey {
    /// The histogram's name and description.
    fn metric(&self) -> (&'static str, &'static str) {
        match (&self.labels, self.server) {
            (Labels::Http { .. }, true) => (SERVER_DURATION, "Duration of HTTP server requests."),
            (Labels::Http { .. }, false) => (CLIENT_DURATION, "Duration of HTTP client requests."),
            (Labels::Db { .. }, false) => (DB_CLIENT_DURATION, "Duration of database client operations."),
            (Labels::Db { .. }, true) => (
                DB_SERVER_DURATION,
                "Duration of database operations, seen by the database server.",
            ),
            (Labels::Rpc { .. }, true) => (RPC_SERVER_DURATION, "Duration of gRPC calls served."),
            (Labels::Rpc { .. }, false) => (RPC_CLIENT_DURATION, "Duration of gRPC calls made."),
            (Labels::Dns { .. }, false) => (DNS_LOOKUP_DURATION, "Duration of DNS lookups."),
            (Labels::Dns { .. }, true) => (DNS_SERVER_DURATION, "Duration of DNS queries, seen by the DNS server."),
        }
    }
}

/// A service-graph series' identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GraphKey {
    protocol: super::settings::Protocol,
    grpc: bool,
    server: bool,
    pid: u32,
    cgroup: u64,
    peer: Option<IpAddr>,
    port: Option<u16>,
}

#[derive(Debug)]
struct Series {
    attributes: Attributes,
    histogram: Histogram,
    errors: u64,
}

/// The running totals.
#[derive(Debug)]
pub struct Red {
    durations: HashMap<RedKey, Series>,
    graph: HashMap<GraphKey, Series>,
    bounds: Arc<[f64]>,
    db_bounds: Arc<[f64]>,
    max_series: usize,
}

impl Series {
    fn observe(&mut self, value: f64, outcome: &Outcome) {
        self.histogram.observe(value);
        self.errors += u64::from(outcome.error);
    }
}

/// Adds `outcome` to the series of `key`, making it (with the attributes
/// `attributes` builds) when it is new and fits.
fn add<K: std::hash::Hash + Eq>(
    series: &mut HashMap<K, Series>,
    key: K,
    (value, outcome): (f64, &Outcome),
    limits: (&Arc<[f64]>, usize),
    counters: &mut Counters,
    attributes: impl FnOnce() -> Attributes,
) {
    if let Some(existing) = series.get_mut(&key) {
        existing.observe(value, outcome);
        return;
    }
    let (bounds, max) = limits;
    if series.len() >= max {
        counters.series_dropped += 1;
        return;
    }
    let mut new = Series {
        attributes: attributes(),
        histogram: Histogram::new(Arc::clone(bounds)),
        errors: 0,
    };
    new.observe(value, outcome);
    series.insert(key, new);
}

impl Red {
    /// At most `max_series` series of each kind.
    pub fn new(max_series: usize) -> Self {
        Red {
            durations: HashMap::new(),
            graph: HashMap::new(),
            bounds: Arc::from(BOUNDS.as_slice()),
            db_bounds: Arc::from(DB_BOUNDS.as_slice()),
            max_series,
        }
    }

    /// Adds one span's outcome.
    pub fn record(
        &mut self,
        outcome: &Outcome,
        info: &ConnInfo,
        node: &SharedStr,
        strings: &mut Strings,
        counters: &mut Counters,
    ) {
        let service = if outcome.server { info.local } else { outcome.remote };
        let red_key = RedKey {
            server: outcome.server,
            labels: outcome.labels.clone(),
            error: outcome.error,
            service,
            pid: info.id.pid,
            cgroup: info.cgroup_id,
        };
        let bounds = match outcome.labels {
            Labels::Http { .. } | Labels::Rpc { .. } => &self.bounds,
            Labels::Db { .. } | Labels::Dns { .. } => &self.db_bounds,
        };
        let limits = (bounds, self.max_series);
        let value = outcome.duration;
        add(&mut self.durations, red_key, (value, outcome), limits, counters, || {
            let mut red = labels(outcome);
            if let Some(address) = service {
                if !outcome.server {
                    red.insert("server.address", strings.ip(address.ip()));
                }
                red.insert("server.port", u32::from(address.port()));
            }
            for (k, v) in process_attributes(info, node, strings).iter() {
                red.insert(k.clone(), v.clone());
            }
            red
        });
        let grpc = matches!(outcome.labels, Labels::Rpc { .. });
        let graph_key = GraphKey {
            protocol: outcome.protocol,
            grpc,
            server: outcome.server,
            pid: info.id.pid,
            cgroup: info.cgroup_id,
            peer: outcome.remote.map(|a| a.ip()),
            port: service.map(|a| a.port()),
        };
        let limits = (&self.bounds, self.max_series);
        // The graph is in seconds for every protocol.
        add(
            &mut self.graph,
            graph_key,
            (outcome.duration, outcome),
            limits,
            counters,
            || {
                let mut graph = process_attributes(info, node, strings);
                graph.insert(SIDE, if outcome.server { "server" } else { "client" });
                match outcome.protocol {
                    super::settings::Protocol::Http2 => {
                        graph.insert("network.protocol.name", "http");
                        graph.insert("network.protocol.version", "2");
                    }
                    protocol => graph.insert("network.protocol.name", protocol.name()),
                }
                if grpc {
                    graph.insert("rpc.system", "grpc");
                }
                if let Some(peer) = outcome.remote {
                    graph.insert("network.peer.address", strings.ip(peer.ip()));
                }
                if let Some(address) = service {
                    graph.insert("server.port", u32::from(address.port()));
                }
                graph
            },
        );
    }

    /// Every series, cumulative, stamped `now`.
    pub fn to_metrics(&self, now: Timestamp) -> Vec<Metric> {
        let histogram = |name: &'static str, s: &Series, description: &'static str| {
            Metric::histogram(name, s.histogram.clone(), Temporality::Cumulative)
                .with_description(description)
                .with_unit("s")
                .with_attributes(s.attributes.clone())
                .with_timestamp(now)
        };
        let mut out = Vec::with_capacity(self.durations.len() + self.graph.len() * 3);
        for (key, s) in &self.durations {
            let (name, description) = key.metric();
            out.push(histogram(name, s, description));
        }
        for s in self.graph.values() {
            out.push(histogram(
                GRAPH_DURATION,
                s,
                "Duration of requests between two services.",
            ));
            for (name, value, description) in [
                (GRAPH_REQUESTS, s.histogram.count, "Requests between two services."),
                (GRAPH_FAILED, s.errors, "Failed requests between two services."),
            ] {
                out.push(
                    Metric::counter(name, value as f64)
                        .with_description(description)
                        .with_unit("{request}")
                        .with_attributes(s.attributes.clone())
                        .with_timestamp(now),
                );
            }
        }
        out
    }
}

/// A duration series' protocol attributes.
fn labels(outcome: &Outcome) -> Attributes {
    match &outcome.labels {
        Labels::Http { method, route, status } => {
            let mut red = Attributes::new().with("http.request.method", method.clone());
            // HTTP/2 streams joined mid-connection may have no route or status.
            if !route.is_empty() {
                red.insert("http.route", route.clone());
            }
            if *status != 0 {
                red.insert("http.response.status_code", u32::from(*status));
            }
            if outcome.error {
                red.insert("error.type", status.to_string());
            }
            red
        }
        Labels::Rpc {
            service,
            method,
            status,
        } => {
            let mut red = Attributes::new().with("rpc.system", "grpc");
            if !service.is_empty() {
                red.insert("rpc.service", service.clone());
                red.insert("rpc.method", method.clone());
            }
            if let Some(status) = status {
                red.insert("rpc.grpc.status_code", u64::from(*status));
                if outcome.error {
                    red.insert("error.type", super::http2::grpc::status_name(*status));
                }
            }
            red
        }
        Labels::Db {
            system,
            operation,
            namespace,
            status,
            error,
        } => {
            let mut red = Attributes::new()
                .with("db.system.name", system.name())
                .with("db.operation.name", operation.clone());
            if let Some(namespace) = namespace {
                red.insert("db.namespace", namespace.clone());
            }
            if let Some(status) = status {
                red.insert("db.response.status_code", status.clone());
            }
            if let Some(error) = error {
                red.insert("error.type", error.clone());
            }
            red
        }
        Labels::Dns { name, qtype, rcode } => {
            let mut red = Attributes::new()
                .with("dns.question.name", name.clone())
                .with("dns.question.type", qtype.clone());
            if outcome.error {
                red.insert("error.type", rcode.clone());
            }
            red
        }
    }
}
