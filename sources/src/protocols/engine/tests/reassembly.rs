//! Ordering, duplicates, gaps, joining mid-connection, role inference.

use sonde_core::event::SpanKind;

use super::super::super::model::{Direction::*, Role};
use super::*;

#[test]
fn out_of_order_chunks_are_put_back_in_order() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    let request = get("/ordered/path");
    let (a, rest) = request.split_at(5);
    let (b, d) = rest.split_at(9);
    // Third, first, second: two threads writing the same socket.
    h.chunk_at(c, Ingress, 14, d, d.len() as u32);
    h.chunk_at(c, Ingress, 0, a, a.len() as u32);
    h.chunk_at(c, Ingress, 5, b, b.len() as u32);
    h.send(c, Egress, &ok(200, "fine"));
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(field(spans[0], "url.path"), Some("/ordered/path"));
    assert_eq!(h.engine.counters(), &Counters::default());
}

#[test]
fn duplicate_and_overlapping_chunks_are_dropped_and_counted() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    let request = get("/dup");
    h.send(c, Ingress, &request);
    h.chunk_at(c, Ingress, 0, &request, request.len() as u32);
    h.chunk_at(c, Ingress, 0, &request, request.len() as u32);
    let response = ok(200, "once");
    h.chunk_at(c, Egress, 0, &response[..10], 10);
    // Overlaps the first 10 bytes: only the rest is new.
    h.chunk_at(c, Egress, 0, &response, response.len() as u32);
    assert_eq!(h.spans().len(), 1);
    assert_eq!(h.engine.counters().duplicates, 2);
}

#[test]
fn a_gap_inside_a_head_drops_that_request_and_resyncs_at_the_next() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    let lost = get("/lost/in/gap");
    h.send(c, Ingress, &lost[..8]);
    h.lose(c, Ingress, (lost.len() - 8) as u64);
    h.send(c, Egress, &ok(500, "answer to the lost one"));
    h.send(c, Ingress, &get("/after/gap"));
    h.send(c, Egress, &ok(200, "fine"));
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(field(spans[0], "url.path"), Some("/after/gap"));
    let counters = h.engine.counters();
    assert_eq!(counters.gaps, 1);
    assert_eq!(counters.orphan_responses, 1);
    assert_eq!(
        counters.unanswered_requests, 0,
        "its head never completed: nothing was waiting"
    );
}

#[test]
fn joining_mid_connection_skips_to_the_next_start_line() {
    let c = id(1, 3);
    let mut h = Harness::new(Settings::default());
    // A connection that predates the agent: first seen mid-body, both ways.
    h.chunk_at(c, Ingress, 1_000_000, b"tail of a request body", 22);
    h.chunk_at(
        c,
        Egress,
        2_000_000,
        b"\"json\": 1}\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        59,
    );
    h.chunk_at(
        c,
        Ingress,
        1_000_022,
        &get("/first/seen"),
        get("/first/seen").len() as u32,
    );
    let answer = ok(201, "created");
    h.chunk_at(c, Egress, 2_000_059, &answer, answer.len() as u32);
    let spans = h.spans();
    assert_eq!(spans.len(), 1, "the response without request is dropped");
    assert_eq!(field(spans[0], "url.path"), Some("/first/seen"));
    assert_eq!(int(spans[0], "http.response.status_code"), Some(201));
    assert_eq!(spans[0].kind, SpanKind::Server, "it read the request: the server side");
    assert_eq!(h.engine.counters().orphan_responses, 1);
}

#[test]
fn the_role_of_an_unopened_connection_is_who_sends_the_request() {
    let c = id(2, 5);
    let mut h = Harness::new(Settings::default());
    h.send(c, Egress, &get("/outbound"));
    h.send(c, Ingress, &ok(200, "in"));
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].kind, SpanKind::Client);
    assert_eq!(spans[0].attributes.get("process.pid").and_then(|v| v.as_int()), Some(2));
}

#[test]
fn a_hole_past_the_end_of_a_body_finishes_the_message_and_counts_a_gap() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    h.send(c, Egress, &get("/a"));
    h.send(c, Egress, &get("/b"));
    // One read: both responses, captured up to the middle of the first body.
    let first = ok(200, "first");
    let mut both = first.clone();
    both.extend(ok(200, "second"));
    h.send_partial(c, Ingress, &first[..first.len() - 2], both.len() as u32);
    h.send(c, Egress, &get("/c"));
    h.send(c, Ingress, &ok(202, "third"));
    let spans = h.spans();
    let got: Vec<_> = spans
        .iter()
        .map(|s| {
            (
                field(s, "url.path").unwrap(),
                int(s, "http.response.status_code").unwrap(),
            )
        })
        .collect();
    // /b's response was in the hole: /b is dropped rather than paired with /c's.
    assert_eq!(got, [("/a", 200), ("/c", 202)]);
    assert_eq!(h.engine.counters().gaps, 1);
    assert_eq!(h.engine.counters().unanswered_requests, 1);
}

#[test]
fn held_chunks_are_released_by_expiry_when_the_missing_one_never_comes() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    let request = get("/late");
    h.chunk_at(c, Ingress, 100, &request, request.len() as u32);
    assert!(h.engine.memory() > 512, "the chunk is held back");
    let now = Timestamp::from_nanos(h.clock + 1_000_000_000);
    h.engine.expire(now, &mut h.events);
    h.send(c, Egress, &ok(200, "x"));
    // Positions 0..100 never came: released with a hole, then parsed.
    assert_eq!(h.spans().len(), 1);
    assert_eq!(h.engine.memory(), 512, "only the connection's overhead is left");
}

#[test]
fn a_start_line_cut_across_syscalls_is_still_detected() {
    // No open seen: the protocol is found only once ` /path` arrives, and
    // the bytes before the decision are not lost.
    let c = id(3, 9);
    let mut h = Harness::new(Settings::default());
    for part in [&b"GE"[..], b"T", b" /split HTTP/1.1\r", b"\n\r\n"] {
        h.send(c, Egress, part);
    }
    for part in [&b"HTTP"[..], b"/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"] {
        h.send(c, Ingress, part);
    }
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(field(spans[0], "url.path"), Some("/split"));
    assert_eq!(spans[0].kind, SpanKind::Client);
}

#[test]
fn a_full_reorder_window_gives_up_on_the_missing_chunk() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    // Position 0..10 never comes; eleven requests after it wait, then the
    // window (8) overflows and everything from the first held one is parsed.
    h.chunk_at(c, Egress, 0, b"", 0);
    let mut position = 10;
    for i in 0..11 {
        let request = get(&format!("/w/{i}"));
        h.chunk_at(c, Egress, position, &request, request.len() as u32);
        position += request.len() as u64;
    }
    for i in 0..11 {
        h.send(c, Ingress, &ok(200 + i, ""));
    }
    let spans = h.spans();
    assert_eq!(spans.len(), 11);
    assert_eq!(field(spans[10], "url.path"), Some("/w/10"));
    assert_eq!(int(spans[10], "http.response.status_code"), Some(210));
    assert_eq!(h.engine.counters().gaps, 1);
    assert_eq!(h.engine.counters().duplicates, 0, "an empty chunk is no duplicate");
}
