//! The OpenTelemetry semantic-convention fields of an HTTP span.

use sonde_core::event::{Attributes, SharedStr};

use super::super::redact;
use super::super::strings::Strings;
use super::head::{Request, KNOWN_METHODS};
use super::HttpExchange;

/// `http.request.method`: the method, or `_OTHER` for one outside RFC 9110.
pub fn method(request: &Request) -> SharedStr {
    match KNOWN_METHODS.iter().find(|m| request.method == **m) {
        Some(known) => SharedStr::from_static(known),
        None => SharedStr::from_static("_OTHER"),
    }
}

/// Whether the status is an error for this side: 5xx for servers, 4xx
/// and 5xx for clients (the OpenTelemetry rule).
pub fn is_error(status: u16, server: bool) -> bool {
    status >= 500 || (!server && status >= 400)
}

/// Adds the exchange's fields; `route` is its `http.route`.
pub fn fill(http: &HttpExchange, route: &SharedStr, server: bool, fields: &mut Attributes, strings: &mut Strings) {
    let request = &http.request;
    let response = &http.response;
    // The endpoints are the only fields set before: these keys are new.
    let method = method(request);
    if method.as_str() == "_OTHER" {
        fields.push_new("http.request.method_original", request.method.clone());
    }
    fields.push_new("http.request.method", method);
    fields.push_new("url.path", request.path.clone());
    if let Some(query) = &request.query {
        fields.push_new("url.query", redact::query(query));
    }
    fields.push_new("http.route", route.clone());
    fields.push_new("http.response.status_code", u32::from(response.status));
    fields.push_new("network.protocol.name", "http");
    fields.push_new(
        "network.protocol.version",
        if request.minor == 0 { "1.0" } else { "1.1" },
    );
    for (name, value) in &request.headers {
        if name == "user-agent" {
            fields.insert("user_agent.original", value.clone());
        }
        fields.insert(strings.header_key(true, name), value.clone());
    }
    for (name, value) in &response.headers {
        fields.insert(strings.header_key(false, name), value.clone());
    }
    fields.push_new("http.request.body.size", http.request_body_size);
    fields.push_new("http.response.body.size", http.response_body_size);
    if let Some(body) = &http.request_body {
        fields.insert("http.request.body.content", String::from_utf8_lossy(body).into_owned());
    }
    if let Some(body) = &http.response_body {
        fields.insert("http.response.body.content", String::from_utf8_lossy(body).into_owned());
    }
    if is_error(response.status, server) {
        fields.insert("error.type", response.status.to_string());
    }
}
