//! PostgreSQL sessions on recorded conversations (`fixtures/pg_*.txt`).

use sonde_core::event::{SpanKind, SpanStatus};

use super::super::super::model::{Direction::*, Role};
use super::sqlreplay::*;
use super::*;

fn o(op: Option<&str>, status: &str, rows: Option<i64>) -> (Option<String>, Option<String>, Option<i64>) {
    (op.map(str::to_owned), Some(status.to_owned()), rows)
}

const PSQL: &str = include_str!("fixtures/pg_psql.txt");
const EXTENDED: &str = include_str!("fixtures/pg_pgbench_extended.txt");
const PREPARED: &str = include_str!("fixtures/pg_pgbench_prepared.txt");

#[test]
fn psql_simple_queries_pair_one_span_per_statement() {
    for role in [Role::Client, Role::Server] {
        let h = replayed(PSQL, role);
        assert_eq!(
            outcomes(&h),
            vec![
                o(Some("INSERT"), "00000", Some(1)),
                o(Some("SELECT"), "00000", Some(1)),
                o(Some("UPDATE"), "00000", Some(1)),
                o(Some("SELECT"), "42P01", None),
                o(Some("BEGIN"), "00000", None),
                o(Some("INSERT"), "00000", Some(1)),
                o(Some("COMMIT"), "00000", None),
                o(Some("DELETE"), "00000", Some(1)),
                o(None, "00000", None),
            ]
        );
        let spans = h.spans();
        assert_eq!(field(spans[0], "db.system.name"), Some("postgresql"));
        assert_eq!(field(spans[0], "db.namespace"), Some("shop"));
        assert_eq!(field(spans[0], "db.query.text"), Some("INSERT INTO users VALUES (?)"));
        assert_eq!(field(spans[1], "db.query.summary"), Some("SELECT users"));
        assert_eq!(spans[1].name.as_str(), "SELECT users");
        assert_eq!(
            field(spans[2], "db.query.text"),
            Some("UPDATE users SET name = ? WHERE id IN (?)")
        );
        assert_eq!(field(spans[3], "error.type"), Some("42P01"));
        assert!(matches!(spans[3].status, SpanStatus::Error { .. }));
        assert_eq!(spans[0].status, SpanStatus::Unset);
        let kind = if role == Role::Server {
            SpanKind::Server
        } else {
            SpanKind::Client
        };
        assert!(spans.iter().all(|s| s.kind == kind));
        assert!(spans.iter().all(|s| s.end > s.start));
        assert_no_literal(&h);
        let c = h.engine.counters();
        assert_eq!(
            (c.gaps, c.unanswered_requests, c.orphan_responses, c.misdetected),
            (0, 0, 0, 0)
        );
    }
}

fn pgbench_operations() -> Vec<&'static str> {
    ["BEGIN", "UPDATE", "SELECT", "UPDATE", "UPDATE", "INSERT", "COMMIT"].repeat(4)
}

#[test]
fn pgbench_extended_and_prepared_pair_every_execute() {
    for (fixture, named) in [(EXTENDED, false), (PREPARED, true)] {
        let h = replayed(fixture, Role::Client);
        let spans = h.spans();
        let operations: Vec<_> = spans.iter().map(|s| field(s, "db.operation.name").unwrap()).collect();
        assert_eq!(operations, pgbench_operations());
        assert_eq!(
            field(spans[1], "db.query.text"),
            Some("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;")
        );
        assert_eq!(field(spans[1], "db.query.summary"), Some("UPDATE pgbench_accounts"));
        assert_eq!(int(spans[2], "db.response.returned_rows"), Some(1));
        assert_eq!(field(spans[1], "sonde.db.statement.name"), named.then_some("P_1"));
        assert_eq!(h.engine.counters().unanswered_requests, 0);
        assert_no_literal(&h);
    }
}

#[test]
fn copy_in_and_out_are_one_exchange_each_and_their_data_never_read() {
    for fixture in [
        include_str!("fixtures/pg_copy_in.txt"),
        include_str!("fixtures/pg_copy_out.txt"),
    ] {
        let h = replayed(fixture, Role::Client);
        assert_eq!(outcomes(&h), vec![o(Some("COPY"), "00000", Some(2))]);
        assert_eq!(
            field(h.spans()[0], "db.query.summary").map(|s| s.starts_with("COPY")),
            Some(true)
        );
        assert_no_literal(&h);
    }
}

#[test]
fn a_connection_joined_mid_way_is_detected_from_its_statements() {
    // From the first Parse on: no startup, no role, statement names unknown.
    let all = lines(PREPARED);
    let first_parse = all.iter().position(|(client, b)| *client && b[0] == b'P').unwrap();
    let c = id(1, 3);
    let mut h = Harness::new(settings());
    replay(&mut h, c, Role::Unknown, &all[first_parse..]);
    h.close(c);
    let operations: Vec<_> = h
        .spans()
        .iter()
        .map(|s| field(s, "db.operation.name").unwrap())
        .collect();
    assert_eq!(operations, pgbench_operations());
    // Joined mid-way, the process's side is unknown: Egress carried requests.
    assert_eq!(h.engine.counters().misdetected, 0);
}

#[test]
fn a_server_gap_loses_statements_but_never_mispairs() {
    let all = lines(EXTENDED);
    let c = id(1, 3);
    let mut h = Harness::new(settings());
    h.engine.open(info(c, Role::Client));
    let mut server_lines = 0;
    for (client, bytes) in &all {
        let direction = if *client { Egress } else { Ingress };
        if !client {
            server_lines += 1;
        }
        if !client && server_lines % 5 == 0 {
            // Moved but not captured: the whole answer of one batch.
            h.send_partial(c, direction, &[], bytes.len() as u32);
        } else if !client && server_lines % 7 == 0 {
            // Captured in part: the framing survives only within a message.
            h.send_partial(c, direction, &bytes[..3], bytes.len() as u32);
        } else {
            h.send(c, direction, bytes);
        }
    }
    h.close(c);
    // A lost answer costs its batch and the next (completions are ignored
    // up to a ReadyForQuery, and the batches sent before it dropped).
    let spans = h.spans();
    assert!(
        spans.len() >= 8 && spans.len() < 28,
        "{} spans {:?}",
        spans.len(),
        h.engine.counters()
    );
    assert!(h.engine.counters().gaps > 0);
    // Each span's operation comes from its own statement's text and the tag.
    for s in &spans {
        let text = field(s, "db.query.text").unwrap_or("").to_ascii_uppercase();
        let op = field(s, "db.operation.name").unwrap();
        let expected = if text.starts_with("END") {
            "COMMIT"
        } else {
            text.split(' ').next().unwrap().trim_end_matches(';')
        };
        assert_eq!(op, expected, "{text}");
    }
}

#[test]
fn a_query_cut_by_the_capture_keeps_its_masked_prefix() {
    let c = id(1, 3);
    let mut h = Harness::new(settings());
    h.engine.open(info(c, Role::Client));
    h.send(c, Egress, b"Q\0\0\0\x0dSELECT 1\0");
    h.send(c, Ingress, b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
    let sql = format!(
        "SELECT * FROM users WHERE name = 'Zorblax {}' AND id = 1\0",
        "x".repeat(5000)
    );
    let mut q = vec![b'Q'];
    q.extend_from_slice(&(4 + sql.len() as u32).to_be_bytes());
    q.extend_from_slice(sql.as_bytes());
    h.send_partial(c, Egress, &q[..4096], q.len() as u32);
    h.send(c, Ingress, b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
    let spans = &h.spans()[1..];
    assert_eq!(spans.len(), 1);
    assert_eq!(
        field(spans[0], "db.query.text"),
        Some("SELECT * FROM users WHERE name = ?")
    );
    assert!(matches!(
        spans[0].fields.get("sonde.db.query.truncated"),
        Some(sonde_core::event::Value::Bool(true))
    ));
    assert_no_literal(&h);
}

#[test]
fn ssl_request_then_startup_after_tls_is_followed() {
    // After `S`, the TLS uprobes hand over the plaintext from the startup on.
    let c = id(1, 3);
    let mut h = Harness::new(settings());
    h.engine.open(info(c, Role::Client));
    h.send(c, Egress, b"\0\0\0\x08\x04\xd2\x16\x2f");
    h.send(c, Ingress, b"S");
    let mut startup = b"\0\0\0\0\0\x03\0\0user\0app\0database\0orders_db\0\0".to_vec();
    let n = startup.len() as u32;
    startup[..4].copy_from_slice(&n.to_be_bytes());
    h.send(c, Egress, &startup);
    h.send(c, Ingress, b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I");
    h.send(c, Egress, b"Q\0\0\0\x0dSELECT 1\0");
    h.send(c, Ingress, b"C\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I");
    let spans = h.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(field(spans[0], "db.namespace"), Some("orders_db"));
    assert_eq!(field(spans[0], "db.query.text"), Some("SELECT ?"));
}
