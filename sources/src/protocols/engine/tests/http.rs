//! HTTP/1.x framing and pairing.

use sonde_core::event::{SpanKind, SpanStatus};

use super::super::super::model::{Direction::*, Role};
use super::*;

#[test]
fn keep_alive_pairs_every_request_in_order() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    for i in 0..1000 {
        h.send(c, Ingress, &get(&format!("/item/{i}?n={i}")));
        let status = if i % 10 == 0 { 404 } else { 200 };
        h.send(c, Egress, &ok(status, &"x".repeat(i % 50)));
    }
    let spans = h.spans();
    assert_eq!(spans.len(), 1000);
    for (i, span) in spans.iter().enumerate() {
        assert_eq!(field(span, "url.path"), Some(format!("/item/{i}").as_str()));
        let status = if i % 10 == 0 { 404 } else { 200 };
        assert_eq!(int(span, "http.response.status_code"), Some(status));
        assert_eq!(int(span, "http.response.body.size"), Some((i % 50) as i64));
        assert_eq!(span.kind, SpanKind::Server);
        // Server spans: a 404 is not an error of the server.
        assert_eq!(span.status, SpanStatus::Unset);
        assert_eq!(
            (span.end.as_nanos() - span.start.as_nanos()),
            TICK,
            "request chunk to response chunk"
        );
    }
    assert_eq!(h.engine.counters(), &Counters::default(), "nothing lost");
}

#[test]
fn pipelined_requests_in_one_write_pair_in_order() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for i in 0..5 {
        requests.extend(get(&format!("/p/{i}")));
        responses.extend(ok(200 + i, &format!("body {i}")));
    }
    h.send(c, Ingress, &requests);
    // The server answers in two writes that split a response in its middle.
    let (a, b) = responses.split_at(responses.len() / 2 + 3);
    h.send(c, Egress, a);
    h.send(c, Egress, b);
    let spans = h.spans();
    let got: Vec<_> = spans
        .iter()
        .map(|s| {
            (
                field(s, "url.path").unwrap().to_owned(),
                int(s, "http.response.status_code").unwrap(),
            )
        })
        .collect();
    let want: Vec<_> = (0..5).map(|i| (format!("/p/{i}"), 200 + i)).collect();
    assert_eq!(got, want);
}

#[test]
fn chunked_bodies_split_anywhere_are_framed() {
    let body = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
    for split in 1..body.len() {
        let c = id(1, 3);
        let mut h = Harness::with(c, Role::Client);
        h.send(
            c,
            Egress,
            b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        );
        let (a, b) = body.as_bytes().split_at(split);
        h.send(c, Ingress, a);
        h.send(c, Ingress, b);
        h.send(c, Egress, &get("/next"));
        h.send(c, Ingress, &ok(204, ""));
        let spans = h.spans();
        assert_eq!(spans.len(), 2, "split at {split}");
        assert_eq!(int(spans[0], "http.request.body.size"), Some(3));
        assert_eq!(int(spans[0], "http.response.body.size"), Some(31));
        assert_eq!(field(spans[1], "url.path"), Some("/next"));
    }
}

#[test]
fn a_five_megabyte_body_mostly_uncaptured_still_pairs() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    let size = 5 * 1024 * 1024;
    h.send(c, Egress, &get("/big"));
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
    // Each 64 KiB read captures only its first 4 KiB.
    let mut sent = 0usize;
    let mut first = true;
    while sent < head.len() + size {
        let len = (head.len() + size - sent).min(65536);
        let mut captured = if first { head.clone().into_bytes() } else { Vec::new() };
        first = false;
        captured.resize(4096.min(len), b'x');
        h.send_partial(c, Ingress, &captured, len as u32);
        sent += len;
    }
    h.send(c, Egress, &get("/after"));
    h.send(c, Ingress, &ok(200, "done"));
    let spans = h.spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(int(spans[0], "http.response.body.size"), Some(size as i64));
    assert_eq!(field(spans[1], "url.path"), Some("/after"));
    assert_eq!(
        h.engine.counters().gaps,
        0,
        "holes inside the body are skipped, not gaps"
    );
    assert!(h.engine.counters().skipped_body_gaps > 70);
}

#[test]
fn head_responses_have_no_body_even_with_a_content_length() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    h.send(c, Ingress, b"HEAD /h HTTP/1.1\r\n\r\n");
    h.send(c, Egress, b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    h.send(c, Ingress, &get("/g"));
    h.send(c, Egress, &ok(200, "abc"));
    let spans = h.spans();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].name.as_str(), "HEAD /h");
    assert_eq!(spans[1].name.as_str(), "GET /g");
}

#[test]
fn interim_100_continue_is_skipped_and_204_304_have_no_body() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    h.send(
        c,
        Egress,
        b"PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
    );
    h.send(c, Ingress, b"HTTP/1.1 100 Continue\r\n\r\n");
    h.send(c, Egress, b"data");
    h.send(c, Ingress, b"HTTP/1.1 204 No Content\r\n\r\n");
    h.send(c, Egress, &get("/cached"));
    h.send(c, Ingress, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n");
    h.send(c, Egress, &get("/missing"));
    h.send(c, Ingress, &ok(404, "no"));
    let spans = h.spans();
    let statuses: Vec<_> = spans
        .iter()
        .map(|s| int(s, "http.response.status_code").unwrap())
        .collect();
    assert_eq!(statuses, [204, 304, 404]);
    assert_eq!(int(spans[0], "http.request.body.size"), Some(4));
    assert_eq!(spans[0].kind, SpanKind::Client);
    // Client spans: a 404 is an error.
    assert!(matches!(&spans[2].status, SpanStatus::Error { message } if message.as_str() == "404"));
    assert_eq!(field(spans[2], "error.type"), Some("404"));
}

#[test]
fn upgrade_and_connect_stop_parsing_the_connection() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    h.send(
        c,
        Ingress,
        b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    );
    h.send(
        c,
        Egress,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    );
    // WebSocket frames that happen to contain HTTP text.
    h.send(c, Ingress, b"\x81\x05GET / HTTP/1.1\r\n\r\n");
    h.send(c, Egress, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(h.spans().len(), 1);
    assert_eq!(int(h.spans()[0], "http.response.status_code"), Some(101));

    let t = id(1, 4);
    h.engine.open(info(t, Role::Client));
    h.send(t, Egress, b"CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n");
    h.send(t, Ingress, b"HTTP/1.1 200 Connection established\r\n\r\n");
    h.send(t, Egress, b"GET /inside-tunnel HTTP/1.1\r\n\r\n");
    h.send(t, Ingress, &ok(200, ""));
    assert_eq!(h.spans().len(), 2);
    assert_eq!(h.spans()[1].name.as_str(), "CONNECT /*");
    assert_eq!(h.engine.counters(), &Counters::default());
}

#[test]
fn a_response_read_until_close_ends_at_the_close() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    h.send(c, Egress, b"GET /old HTTP/1.0\r\n\r\n");
    h.send(c, Ingress, b"HTTP/1.0 200 OK\r\n\r\npart one ");
    h.send(c, Ingress, b"part two");
    assert!(h.spans().is_empty());
    h.close(c);
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(int(spans[0], "http.response.body.size"), Some(17));
    assert_eq!(field(spans[0], "network.protocol.version"), Some("1.0"));
    assert_eq!(spans[0].end.as_nanos(), h.clock);
}

#[test]
fn unknown_methods_are_other_and_unanswered_requests_are_counted_at_close() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    h.send(c, Ingress, b"PURGE /cache HTTP/1.1\r\n\r\n");
    h.send(c, Egress, &ok(200, ""));
    h.send(c, Ingress, &get("/never-answered"));
    h.close(c);
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(field(spans[0], "http.request.method"), Some("_OTHER"));
    assert_eq!(field(spans[0], "http.request.method_original"), Some("PURGE"));
    assert_eq!(spans[0].name.as_str(), "HTTP /cache");
    assert_eq!(h.engine.counters().unanswered_requests, 1);
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.engine.memory(), 0, "a closed connection holds nothing");
}

#[test]
fn server_5xx_is_an_error_and_endpoints_come_from_the_connection() {
    let c = id(9, 3);
    let mut h = Harness::with(c, Role::Server);
    h.send(c, Ingress, &get("/boom"));
    h.send(c, Egress, &ok(503, "down"));
    let span = h.spans()[0].clone();
    assert!(matches!(&span.status, SpanStatus::Error { message } if message.as_str() == "503"));
    assert_eq!(field(&span, "server.address"), Some("10.0.0.1"));
    assert_eq!(int(&span, "server.port"), Some(8080));
    assert_eq!(field(&span, "client.address"), Some("10.0.0.2"));
    assert_eq!(int(&span, "client.port"), Some(40000));
    assert_eq!(field(&span, "network.peer.address"), Some("10.0.0.2"));
    assert_eq!(span.attributes.get("process.pid").and_then(|v| v.as_int()), Some(9));
    assert_eq!(span.attributes.get("cgroup.id").and_then(|v| v.as_int()), Some(4242));
    assert_eq!(
        span.attributes.get("process.executable.name").and_then(|v| v.as_str()),
        Some("app")
    );
}
