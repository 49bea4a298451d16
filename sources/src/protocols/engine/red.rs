//! RED metrics (rate, errors, duration) and the service graph, added up
//! from every span and exported as cumulative points.
//!
//! - `http.server.request.duration` and `http.client.request.duration`
//!   (seconds, the OpenTelemetry semantic-convention names and bucket
//!   boundaries) by method, route, status code, `error.type`, the peer
//!   service (`server.address` and `server.port` of client spans) and the
//!   process attributes `pod_enrich` completes. The Prometheus sink exposes
//!   them as `http_server_request_duration_seconds_{bucket,sum,count}`.
//! - The service graph, named like `net_flows`' service map: per (process
//!   on this node, peer address, service port) and side
//!   (`sonde.flow.direction`), [`GRAPH_REQUESTS`], [`GRAPH_FAILED`] and
//!   [`GRAPH_DURATION`].

use std::collections::HashMap;
use std::sync::Arc;

use sonde_core::event::{Attributes, Histogram, Metric, SharedStr, Temporality, Timestamp};

use super::super::model::ConnInfo;
use super::counters::Counters;
use super::span::{process_attributes, Outcome};

/// Histogram of server request durations.
pub const SERVER_DURATION: &str = "http.server.request.duration";
/// Histogram of client request durations.
pub const CLIENT_DURATION: &str = "http.client.request.duration";
/// Counter of requests between two services.
pub const GRAPH_REQUESTS: &str = "sonde_service_graph_requests_total";
/// Counter of failed requests between two services.
pub const GRAPH_FAILED: &str = "sonde_service_graph_failed_requests_total";
/// Histogram of request durations between two services.
pub const GRAPH_DURATION: &str = "sonde_service_graph_request_duration_seconds";
/// Attribute of the graph: which end saw the request (`client`, `server`).
pub const SIDE: &str = "sonde.flow.direction";
/// The OpenTelemetry semantic conventions' advice for HTTP durations.
pub const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// A series' identity: its attributes as text, in insertion order.
type Key = Vec<(SharedStr, String)>;

#[derive(Debug)]
struct Series {
    attributes: Attributes,
    histogram: Histogram,
    errors: u64,
}

/// The running totals.
#[derive(Debug)]
pub struct Red {
    durations: HashMap<(bool, Key), Series>,
    graph: HashMap<Key, Series>,
    bounds: Arc<[f64]>,
    max_series: usize,
}

fn key(attributes: &Attributes) -> Key {
    attributes.iter().map(|(k, v)| (k.clone(), v.to_string())).collect()
}

impl Red {
    /// At most `max_series` series of each kind.
    pub fn new(max_series: usize) -> Self {
        Red {
            durations: HashMap::new(),
            graph: HashMap::new(),
            bounds: Arc::from(BOUNDS.as_slice()),
            max_series,
        }
    }

    /// Adds one span's outcome.
    pub fn record(&mut self, outcome: &Outcome, info: &ConnInfo, node: &SharedStr, counters: &mut Counters) {
        let process = process_attributes(info, node);
        let mut red = Attributes::new()
            .with("http.request.method", outcome.method.clone())
            .with("http.route", outcome.route.clone())
            .with("http.response.status_code", u32::from(outcome.status));
        if outcome.error {
            red.insert("error.type", outcome.status.to_string());
        }
        let service = if outcome.server { info.local } else { info.remote };
        if let Some(address) = service {
            if !outcome.server {
                red.insert("server.address", address.ip().to_string());
            }
            red.insert("server.port", u32::from(address.port()));
        }
        for (k, v) in process.iter() {
            red.insert(k.clone(), v.clone());
        }
        let mut graph = process;
        graph.insert(SIDE, if outcome.server { "server" } else { "client" });
        graph.insert("network.protocol.name", "http");
        if let Some(peer) = info.remote {
            graph.insert("network.peer.address", peer.ip().to_string());
        }
        if let Some(address) = service {
            graph.insert("server.port", u32::from(address.port()));
        }
        let (bounds, max) = (&self.bounds, self.max_series);
        let mut add = |series: Option<&mut Series>, fits: bool| -> Option<Series> {
            match series {
                Some(s) => {
                    s.histogram.observe(outcome.duration);
                    s.errors += u64::from(outcome.error);
                    None
                }
                None if fits => {
                    let mut histogram = Histogram::new(Arc::clone(bounds));
                    histogram.observe(outcome.duration);
                    Some(Series {
                        attributes: Attributes::new(),
                        histogram,
                        errors: u64::from(outcome.error),
                    })
                }
                None => {
                    counters.series_dropped += 1;
                    None
                }
            }
        };
        let red_key = (outcome.server, key(&red));
        let fits = self.durations.len() < max;
        if let Some(mut new) = add(self.durations.get_mut(&red_key), fits) {
            new.attributes = red;
            self.durations.insert(red_key, new);
        }
        let graph_key = key(&graph);
        let fits = self.graph.len() < max;
        if let Some(mut new) = add(self.graph.get_mut(&graph_key), fits) {
            new.attributes = graph;
            self.graph.insert(graph_key, new);
        }
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
        for ((server, _), s) in &self.durations {
            out.push(if *server {
                histogram(SERVER_DURATION, s, "Duration of HTTP server requests.")
            } else {
                histogram(CLIENT_DURATION, s, "Duration of HTTP client requests.")
            });
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
