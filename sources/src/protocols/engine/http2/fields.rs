//! The OpenTelemetry semantic-convention fields of an HTTP/2 stream's
//! span: the HTTP ones (as HTTP/1.x's, `network.protocol.version` 2), or
//! for gRPC the `rpc.*` ones. What could not be decoded (joined
//! mid-connection) is left out or `_OTHER`, never guessed, and the span
//! says how many fields were unknown.

use sonde_core::event::{Attributes, SharedStr};

use super::super::http::head::KNOWN_METHODS;
use super::super::redact;
use super::super::span::Labels;
use super::super::strings::Strings;
use super::grpc::{self, service_method};
use super::Http2Exchange;

/// Attribute: header fields of the stream that could not be decoded.
pub const UNKNOWN_FIELDS: &str = "sonde.http2.unknown_fields";

/// `http.request.method`: the method, `_OTHER` when outside RFC 9110 or
/// not decoded.
pub fn method(exchange: &Http2Exchange) -> SharedStr {
    let known = exchange
        .request
        .method
        .as_deref()
        .and_then(|m| KNOWN_METHODS.iter().find(|k| **k == m));
    match known {
        Some(known) => SharedStr::from_static(known),
        None => SharedStr::from_static("_OTHER"),
    }
}

/// What a span of the exchange is: name, metric labels, error, message.
pub struct Shape {
    pub name: String,
    pub labels: Labels,
    pub error: bool,
    pub message: SharedStr,
}

/// Adds the exchange's fields; `route` is its `http.route` (`None` when
/// the path was not decoded).
pub fn fill(
    exchange: &Http2Exchange,
    route: Option<SharedStr>,
    server: bool,
    fields: &mut Attributes,
    strings: &mut Strings,
) -> Shape {
    let request = &exchange.request;
    let response = &exchange.response;
    fields.insert("network.protocol.name", "http");
    fields.insert("network.protocol.version", "2");
    let unknown = request.unknown + response.unknown;
    if unknown > 0 {
        fields.insert(UNKNOWN_FIELDS, u64::from(unknown));
    }
    for (name, value) in &request.headers {
        if name == "user-agent" {
            fields.insert("user_agent.original", value.clone());
        }
        fields.insert(strings.header_key(true, name), value.clone());
    }
    for (name, value) in &response.headers {
        fields.insert(strings.header_key(false, name), value.clone());
    }
    if let Some(code) = exchange.reset {
        fields.insert("sonde.http2.rst_stream.error_code", u64::from(code));
    }
    if exchange.is_grpc() {
        return fill_grpc(exchange, server, fields);
    }
    let method = method(exchange);
    match &request.method {
        Some(m) if method.as_str() == "_OTHER" => fields.insert("http.request.method_original", m.clone()),
        _ => {}
    }
    fields.insert("http.request.method", method.clone());
    if let Some(path) = &request.path {
        fields.insert("url.path", path.clone());
    }
    if let Some(query) = &request.query {
        fields.insert("url.query", redact::query(query));
    }
    if let Some(route) = &route {
        fields.insert("http.route", route.clone());
    }
    let status = response.status.unwrap_or(0);
    if let Some(status) = response.status {
        fields.insert("http.response.status_code", u32::from(status));
    }
    fields.insert("http.request.body.size", exchange.request_body_size);
    fields.insert("http.response.body.size", exchange.response_body_size);
    let error = super::super::http::fields::is_error(status, server) || exchange.reset.is_some_and(|c| c != 0);
    if error {
        let kind = if status >= 400 {
            status.to_string()
        } else {
            "rst_stream".to_string()
        };
        fields.insert("error.type", kind);
    }
    let name = match (method.as_str(), &route) {
        ("_OTHER", Some(route)) => format!("HTTP {route}"),
        ("_OTHER", None) => "HTTP".to_string(),
        (known, Some(route)) => format!("{known} {route}"),
        (known, None) => known.to_string(),
    };
    let message = if error {
        status.to_string().into()
    } else {
        SharedStr::default()
    };
    Shape {
        name,
        labels: Labels::Http {
            method,
            route: route.unwrap_or_default(),
            status,
        },
        error,
        message,
    }
}

fn fill_grpc(exchange: &Http2Exchange, server: bool, fields: &mut Attributes) -> Shape {
    fields.insert("rpc.system", "grpc");
    let names = exchange.request.path.as_deref().and_then(service_method);
    let (service, method): (SharedStr, SharedStr) = match names {
        Some((service, method)) => {
            fields.insert("rpc.service", service.to_owned());
            fields.insert("rpc.method", method.to_owned());
            (service.to_owned().into(), method.to_owned().into())
        }
        None => (SharedStr::default(), SharedStr::default()),
    };
    let status = exchange.grpc_status;
    if let Some(code) = status {
        fields.insert("rpc.grpc.status_code", u64::from(code));
    }
    if let Some(code) = exchange.response.status {
        fields.insert("http.response.status_code", u32::from(code));
    }
    for (key, messages) in [
        ("sonde.rpc.request.messages", &exchange.request_messages),
        ("sonde.rpc.response.messages", &exchange.response_messages),
    ] {
        fields.insert(key, u64::from(messages.count));
        if messages.uncertain {
            fields.insert(format!("{key}.lower_bound"), true);
        }
    }
    // A stream reset without a status is the call cancelled.
    let status_or_reset = status.or(exchange.reset.map(|_| 1));
    let error = grpc::is_error(status_or_reset, server);
    let message: SharedStr = match status_or_reset {
        Some(code) if error => grpc::status_name(code).into(),
        _ => SharedStr::default(),
    };
    if error {
        fields.insert("error.type", message.clone());
    }
    let name = match names {
        Some((s, m)) => format!("{s}/{m}"),
        None => "grpc".to_string(),
    };
    Shape {
        name,
        labels: Labels::Rpc {
            service,
            method,
            status: status_or_reset,
        },
        error,
        message,
    }
}
