//! MySQL/MariaDB sessions on recorded conversations (`fixtures/mariadb_*.txt`).

use super::super::super::model::{Direction::*, Role};
use super::sqlreplay::*;
use super::*;

const CLI: &str = include_str!("fixtures/mariadb_cli.txt");
const PREPARED: &str = include_str!("fixtures/mariadb_prepared.txt");

fn o(op: &str, status: Option<&str>, rows: Option<i64>) -> (Option<String>, Option<String>, Option<i64>) {
    (Some(op.to_owned()), status.map(str::to_owned), rows)
}

#[test]
fn client_queries_pair_with_ok_result_sets_and_err() {
    for role in [Role::Client, Role::Server] {
        let h = replayed(CLI, role);
        assert_eq!(
            outcomes(&h),
            vec![
                o("INSERT", None, Some(1)),
                o("SELECT", None, Some(1)),
                o("UPDATE", None, Some(1)),
                o("SELECT", Some("1146"), None),
            ]
        );
        let spans = h.spans();
        assert_eq!(field(spans[0], "db.system.name"), Some("mariadb"));
        assert_eq!(field(spans[0], "db.namespace"), Some("shop"));
        assert_eq!(
            field(spans[1], "db.query.text"),
            Some("SELECT id, name FROM users WHERE email = ?")
        );
        assert_eq!(field(spans[3], "error.type"), Some("1146"));
        assert_no_literal(&h);
        let c = h.engine.counters();
        assert_eq!((c.gaps, c.unanswered_requests, c.misdetected), (0, 0, 0));
    }
}

#[test]
fn prepared_statements_execute_with_their_remembered_text() {
    let h = replayed(PREPARED, Role::Client);
    assert_eq!(
        outcomes(&h),
        vec![
            o("SET", None, Some(0)),
            o("SET", None, Some(0)),
            o("PING", None, Some(0)),
            o("INSERT", None, Some(1)),
            o("SELECT", None, Some(2)),
            o("DELETE", None, Some(1)),
            o("COMMIT", None, Some(0)),
        ]
    );
    let spans = h.spans();
    assert_eq!(
        field(spans[3], "db.query.text"),
        Some("INSERT INTO users (id, name, email) VALUES (?, ?, ?)")
    );
    assert_eq!(field(spans[3], "sonde.db.statement.name"), Some("1"));
    assert_eq!(field(spans[4], "db.query.summary"), Some("SELECT users"));
    assert_no_literal(&h);
}

#[test]
fn a_gap_resyncs_at_the_next_command() {
    let all = lines(CLI);
    let c = id(1, 3);
    let mut h = Harness::new(settings());
    h.engine.open(info(c, Role::Client));
    for (i, (client, bytes)) in all.iter().enumerate() {
        let direction = if *client { Egress } else { Ingress };
        if i == 6 {
            // The SELECT's result set, moved but not captured.
            h.send_partial(c, direction, &bytes[..2], bytes.len() as u32);
        } else {
            h.send(c, direction, bytes);
        }
    }
    h.close(c);
    let ops: Vec<_> = outcomes(&h).into_iter().map(|(op, ..)| op.unwrap()).collect();
    assert_eq!(ops, vec!["INSERT", "UPDATE", "SELECT"]);
    assert_eq!(h.engine.counters().gaps, 1);
}
