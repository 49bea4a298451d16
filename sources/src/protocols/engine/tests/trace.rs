//! Passive trace context: `traceparent` continuation and thread nesting.

use sonde_core::event::SpanKind;

use super::super::super::model::{Direction::*, Role};
use super::super::trace_context::TraceParent;
use super::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn traceparent_parses_only_well_formed_values() {
    let good = TraceParent::parse(&format!("00-{TRACE}-{PARENT}-01")).unwrap();
    assert_eq!(hex(&good.trace_id), TRACE);
    assert_eq!(hex(&good.parent_id), PARENT);
    for bad in [
        format!("00-{TRACE}-{PARENT}"),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{TRACE}-{PARENT}-01-extra"),
        format!("00-{TRACE}x-{PARENT}-01"),
        "garbage".to_string(),
    ] {
        assert_eq!(TraceParent::parse(&bad), None, "{bad}");
    }
}

#[test]
fn a_request_with_traceparent_continues_its_trace() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    let request = format!("GET /t HTTP/1.1\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\r\n");
    h.send(c, Ingress, request.as_bytes());
    h.send(c, Egress, &ok(200, ""));
    h.send(c, Ingress, &get("/no-context"));
    h.send(c, Egress, &ok(200, ""));
    let spans = h.spans();
    assert_eq!(hex(&spans[0].trace_id), TRACE);
    assert_eq!(spans[0].parent_span_id.map(|p| hex(&p)), Some(PARENT.to_string()));
    assert_ne!(hex(&spans[0].span_id), PARENT);
    assert_ne!(
        spans[1].trace_id, spans[0].trace_id,
        "a request without context starts a trace"
    );
    assert_eq!(spans[1].parent_span_id, None);
    assert_ne!(spans[1].trace_id, [0; 16]);
}

#[test]
fn client_calls_made_by_the_serving_thread_are_children_of_the_server_span() {
    let inbound = id(10, 3);
    let outbound = id(10, 4);
    let other_thread_call = id(10, 5);
    let mut h = Harness::with(inbound, Role::Server);
    h.engine.open(info(outbound, Role::Client));
    h.engine.open(info(other_thread_call, Role::Client));
    h.tid = 11;
    let request = format!("GET /front HTTP/1.1\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\r\n");
    h.send(inbound, Ingress, request.as_bytes());
    // Thread 11 calls a backend while handling it…
    h.send(outbound, Egress, &get("/backend"));
    h.send(outbound, Ingress, &ok(200, "b"));
    // …while thread 12 of the same process makes an unrelated call.
    h.tid = 12;
    h.send(other_thread_call, Egress, &get("/unrelated"));
    h.send(other_thread_call, Ingress, &ok(200, "u"));
    h.tid = 11;
    h.send(inbound, Egress, &ok(200, "front"));
    // After the response is written, thread 11's calls are not children.
    h.send(outbound, Egress, &get("/after"));
    h.send(outbound, Ingress, &ok(200, "a"));

    let spans = h.spans();
    let by_path = |p: &str| *spans.iter().find(|s| field(s, "url.path") == Some(p)).unwrap();
    let (server, child) = (by_path("/front"), by_path("/backend"));
    assert_eq!(server.kind, SpanKind::Server);
    assert_eq!(child.kind, SpanKind::Client);
    assert_eq!(child.trace_id, server.trace_id);
    assert_eq!(child.parent_span_id, Some(server.span_id));
    assert_eq!(hex(&server.trace_id), TRACE);
    for unrelated in [by_path("/unrelated"), by_path("/after")] {
        assert_ne!(unrelated.trace_id, server.trace_id);
        assert_eq!(unrelated.parent_span_id, None);
    }
}
