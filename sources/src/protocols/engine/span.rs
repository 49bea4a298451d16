//! An [`Exchange`] on a connection becomes a [`Span`]: kind from which way
//! the request went, endpoints from the connection, process attributes as
//! the other sources put them (so `pod_enrich` applies), and the protocol's
//! fields.

use std::net::SocketAddr;

use sonde_core::event::{keys, Attributes, SharedAttributes, SharedStr, Span, SpanKind, SpanStatus};

use super::super::model::{ConnInfo, Direction};
use super::db::{self, DbSystem};
use super::dns;
use super::http::fields;
use super::http2;
use super::routes::{Routes, Service};
use super::session::{Detail, Exchange};
use super::settings::Protocol;
use super::strings::Strings;

/// What the RED metrics and the service graph need of a span.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The protocol.
    pub protocol: Protocol,
    /// Server side (else client).
    pub server: bool,
    /// The protocol's metric attributes.
    pub labels: Labels,
    /// An error for this side.
    pub error: bool,
    /// Seconds from the request's first byte to the response's last.
    pub duration: f64,
    /// The other end (the connection's, or the datagram's).
    pub remote: Option<SocketAddr>,
}

/// The attributes a protocol's duration histogram is split by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Labels {
    /// HTTP: method, route, status code.
    Http {
        /// `http.request.method`.
        method: SharedStr,
        /// `http.route`.
        route: SharedStr,
        /// `http.response.status_code`.
        status: u16,
    },
    /// Databases: system, operation, namespace, status code.
    Db {
        /// `db.system.name`.
        system: DbSystem,
        /// `db.operation.name` (`_OTHER` when unknown).
        operation: SharedStr,
        /// `db.namespace`.
        namespace: Option<SharedStr>,
        /// `db.response.status_code`.
        status: Option<SharedStr>,
        /// `error.type`.
        error: Option<SharedStr>,
    },
    /// gRPC: service, method, status code (`rpc.*`).
    Rpc {
        /// `rpc.service` (empty when not decoded).
        service: SharedStr,
        /// `rpc.method` (empty when not decoded).
        method: SharedStr,
        /// `rpc.grpc.status_code`.
        status: Option<u32>,
    },
    /// DNS: the question and the response code.
    Dns {
        /// `dns.question.name`.
        name: SharedStr,
        /// `dns.question.type`.
        qtype: SharedStr,
        /// The response code (`error.type` when not `NOERROR`).
        rcode: SharedStr,
    },
}

/// The origin attributes of a connection's events.
pub fn process_attributes(info: &ConnInfo, node: &SharedStr, strings: &mut Strings) -> Attributes {
    // Distinct keys: pushed without looking for earlier ones.
    let mut attributes = Attributes::new();
    attributes.push_new(keys::PID, info.id.pid);
    if !info.comm.is_empty() {
        attributes.push_new(keys::COMM, strings.name(&info.comm));
    }
    if info.cgroup_id != 0 {
        attributes.push_new(keys::CGROUP_ID, info.cgroup_id);
    }
    if !node.is_empty() {
        attributes.push_new(keys::node(), node.clone());
    }
    attributes
}

/// The attributes every span of a connection repeats — its process, and
/// its endpoints seen from one side — built once and held by reference
/// (a reference count per span instead of ten pairs copied, and dropped,
/// each time).
#[derive(Debug, Default)]
pub struct Identity {
    process: Option<SharedAttributes>,
    /// The side (server) and the other end they were built for: a
    /// datagram socket's peer may change from one exchange to the next.
    endpoints: Option<(bool, Option<SocketAddr>, SharedAttributes)>,
}

impl Identity {
    fn process(&mut self, info: &ConnInfo, node: &SharedStr, strings: &mut Strings) -> SharedAttributes {
        self.process
            .get_or_insert_with(|| process_attributes(info, node, strings).iter().map(pair).collect())
            .clone()
    }

    fn endpoints(
        &mut self,
        server: bool,
        remote: Option<SocketAddr>,
        info: &ConnInfo,
        strings: &mut Strings,
    ) -> SharedAttributes {
        match &self.endpoints {
            Some((side, peer, set)) if *side == server && *peer == remote => set.clone(),
            _ => {
                let (server_end, client_end) = if server {
                    (info.local, remote)
                } else {
                    (remote, info.local)
                };
                let mut fields = Attributes::with_capacity(6);
                endpoint(&mut fields, SERVER, server_end, strings);
                endpoint(&mut fields, CLIENT, client_end, strings);
                endpoint(&mut fields, PEER, remote, strings);
                let set: SharedAttributes = fields.iter().map(pair).collect();
                self.endpoints = Some((server, remote, set.clone()));
                set
            }
        }
    }
}

fn pair((key, value): (&SharedStr, &sonde_core::event::Value)) -> (SharedStr, sonde_core::event::Value) {
    (key.clone(), value.clone())
}

/// The service a route cap counts against: the server's process and port
/// on server spans, the called address on client spans.
pub fn service(info: &ConnInfo, server: bool, strings: &mut Strings) -> Service {
    if server {
        Service::Server {
            cgroup: info.cgroup_id,
            comm: strings.name(&info.comm),
            port: info.local.map_or(0, |a| a.port()),
        }
    } else {
        info.remote.map_or(Service::Process(info.id.pid), Service::Called)
    }
}

/// Pairs a span's own fields are given room for at once (an HTTP span's
/// request, response and a few headers; the endpoints are shared).
const FIELDS_CAPACITY: usize = 14;

/// `(address key, port key)` of an endpoint.
type EndpointKeys = (&'static str, &'static str);
const SERVER: EndpointKeys = ("server.address", "server.port");
const CLIENT: EndpointKeys = ("client.address", "client.port");
const PEER: EndpointKeys = ("network.peer.address", "network.peer.port");

fn endpoint(
    fields: &mut Attributes,
    (address_key, port_key): EndpointKeys,
    address: Option<SocketAddr>,
    strings: &mut Strings,
) {
    if let Some(address) = address {
        fields.push_new(address_key, strings.ip(address.ip()));
        fields.push_new(port_key, u32::from(address.port()));
    }
}

/// The span of one exchange, and what metrics need of it.
pub fn build(
    exchange: Exchange,
    info: &ConnInfo,
    identity: &mut Identity,
    routes: &mut Routes,
    node: &SharedStr,
    strings: &mut Strings,
) -> (Span, Outcome) {
    let server = exchange.request_direction == Direction::Ingress;
    let remote = exchange.remote.or(info.remote);
    // Room for an HTTP span's own fields: one allocation instead of
    // growing 4 → 8 → 16.
    let mut fields = Attributes::with_capacity(FIELDS_CAPACITY);
    fields.add_shared(identity.endpoints(server, remote, info, strings));
    let duration = exchange.end.as_nanos().saturating_sub(exchange.start.as_nanos()) as f64 / 1e9;
    let (name, labels, error, message): (SharedStr, Labels, bool, SharedStr) = match &exchange.detail {
        Detail::Http(http) => {
            let route = routes.route(&service(info, server, strings), &http.request.path);
            fields::fill(http, &route, server, &mut fields, strings);
            let method = fields::method(&http.request);
            let name = match method.as_str() {
                "_OTHER" => strings.joined(&SharedStr::from_static("HTTP"), &route),
                _ => strings.joined(&method, &route),
            };
            let status = http.response.status;
            let error = fields::is_error(status, server);
            let labels = Labels::Http { method, route, status };
            // The status as text only where it is the error's message.
            let message = if error {
                status.to_string().into()
            } else {
                SharedStr::default()
            };
            (name, labels, error, message)
        }
        Detail::Http2(h2) => {
            let route = h2
                .request
                .path
                .as_ref()
                .map(|path| routes.route(&service(info, server, strings), path));
            let shape = http2::fields::fill(h2, route, server, &mut fields, strings);
            (shape.name.into(), shape.labels, shape.error, shape.message)
        }
        Detail::Db(exchange) => {
            db::fields::fill(exchange, &mut fields);
            let labels = Labels::Db {
                system: exchange.system,
                operation: db::fields::operation(exchange),
                namespace: exchange.namespace.clone(),
                status: exchange.status_code.clone(),
                error: exchange.error.clone(),
            };
            let message = exchange.error.clone().unwrap_or_default();
            (
                db::fields::span_name(exchange, strings),
                labels,
                exchange.error.is_some(),
                message,
            )
        }
        Detail::Dns(exchange) => {
            dns::fields::fill(exchange, &mut fields);
            let labels = Labels::Dns {
                name: exchange.name.clone(),
                qtype: exchange.qtype.clone(),
                rcode: exchange.rcode.clone(),
            };
            (
                dns::fields::span_name(exchange, strings),
                labels,
                exchange.failed(),
                exchange.rcode.clone(),
            )
        }
    };
    if !matches!(exchange.detail, Detail::Http(_) | Detail::Http2(_)) {
        fields.insert("network.protocol.name", exchange.protocol.name());
    }
    let outcome = Outcome {
        protocol: exchange.protocol,
        server,
        labels,
        error,
        duration,
        remote,
    };
    let status = if error {
        SpanStatus::Error { message }
    } else {
        SpanStatus::Unset
    };
    let span = Span {
        trace_id: exchange.context.trace_id,
        span_id: exchange.context.span_id,
        parent_span_id: exchange.parent,
        name,
        kind: if server { SpanKind::Server } else { SpanKind::Client },
        start: exchange.start,
        end: exchange.end.max(exchange.start),
        status,
        fields,
        attributes: {
            let mut attributes = Attributes::new();
            attributes.add_shared(identity.process(info, node, strings));
            attributes
        },
    };
    (span, outcome)
}
