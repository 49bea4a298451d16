//! Idle connections, stale requests, oversized heads: what the engine
//! forgets, and that it counts it.

use super::super::super::model::{Direction::*, Role};
use super::super::connection::CONNECTION_OVERHEAD;
use super::*;

const SECOND: u64 = 1_000_000_000;

#[test]
fn idle_connections_are_closed_and_counted() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Server);
    h.send(c, Ingress, &get("/never-answered"));
    assert!(h.engine.memory() > CONNECTION_OVERHEAD);
    // Not idle yet: 59 s of the default 60.
    h.engine
        .expire(Timestamp::from_nanos(h.clock + 59 * SECOND), &mut h.events);
    assert_eq!(h.engine.connections(), 1);
    h.engine
        .expire(Timestamp::from_nanos(h.clock + 61 * SECOND), &mut h.events);
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.engine.memory(), 0);
    let counters = h.engine.counters();
    assert_eq!((counters.expired_connections, counters.unanswered_requests), (1, 1));
}

#[test]
fn an_opened_connection_without_bytes_starts_its_idle_clock_at_the_first_expiry() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    let first = h.clock + 1000 * SECOND;
    h.engine.expire(Timestamp::from_nanos(first), &mut h.events);
    assert_eq!(h.engine.connections(), 1, "open() carries no time: not idle at once");
    h.engine
        .expire(Timestamp::from_nanos(first + 61 * SECOND), &mut h.events);
    assert_eq!(h.engine.connections(), 0);
}

#[test]
fn requests_unanswered_for_the_idle_timeout_are_dropped_on_busy_connections() {
    let c = id(1, 3);
    let mut h = Harness::with(c, Role::Client);
    h.send(c, Egress, &get("/stuck"));
    h.clock += 61 * SECOND;
    // The connection stays busy: its other direction keeps moving.
    h.send(c, Ingress, b"HTTP/1.1 100 Continue\r\n\r\n");
    h.engine.expire(Timestamp::from_nanos(h.clock), &mut h.events);
    assert_eq!(h.engine.connections(), 1);
    assert_eq!(h.engine.counters().unanswered_requests, 1);
    // The late response has nothing left to pair with.
    h.send(c, Ingress, &ok(200, "late"));
    assert!(h.spans().is_empty());
    assert_eq!(h.engine.counters().orphan_responses, 1);
}

#[test]
fn a_head_larger_than_the_connection_buffer_is_dropped_and_the_next_request_parses() {
    let c = id(1, 3);
    let settings = Settings {
        max_connection_bytes: 4096,
        ..Settings::default()
    };
    let mut h = Harness::new(settings);
    h.engine.open(info(c, Role::Server));
    h.send(c, Ingress, b"GET /huge HTTP/1.1\r\nX-Big: ");
    for _ in 0..10 {
        h.send(c, Ingress, &[b'a'; 500]);
        assert!(h.engine.memory() <= 4096 + CONNECTION_OVERHEAD);
    }
    h.send(c, Ingress, b"\r\n\r\n");
    h.send(c, Egress, &ok(431, ""));
    h.send(c, Ingress, &get("/small"));
    h.send(c, Egress, &ok(200, ""));
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(field(spans[0], "url.path"), Some("/small"));
    assert_eq!(h.engine.counters().truncated, 1);
    assert_eq!(h.engine.counters().orphan_responses, 1);
}
