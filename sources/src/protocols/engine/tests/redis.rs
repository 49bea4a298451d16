//! Redis sessions on real conversations (`fixtures/redis-*.txt`, recorded
//! from redis-server 7 with redis-cli and redis-benchmark), and on bytes
//! that are not Redis.

use sonde_core::event::{SpanKind, SpanStatus};

use super::super::super::model::{Direction::*, Role};
use super::super::infer::{detect, Clue};
use super::super::settings::Protocol;
use super::recorded::{client_direction, conn, reads};
use super::*;

const BENCH_SET: &str = include_str!("fixtures/redis-bench-set.txt");
const BENCH_GET: &str = include_str!("fixtures/redis-bench-get.txt");
const CLI: &str = include_str!("fixtures/redis-cli.txt");
const RESP3: &str = include_str!("fixtures/redis-resp3.txt");
const AUTH: &str = include_str!("fixtures/redis-auth.txt");
const PUBSUB2: &str = include_str!("fixtures/redis-pubsub-resp2.txt");
const PUBSUB3: &str = include_str!("fixtures/redis-pubsub-resp3.txt");
const PASSWORD: &str = "Sw0rdfish-Secret";

fn settings() -> Settings {
    Settings {
        protocols: Protocol::ALL.to_vec(),
        ..Settings::default()
    }
}

/// A harness whose connection is seen from `role` (unknown: not opened).
fn harness(c: ConnId, role: Role, settings: Settings) -> Harness {
    let mut h = Harness::new(settings);
    if role != Role::Unknown {
        h.engine.open(conn(c, role, 6379, false));
    }
    h
}

/// Replays a fixture, each read after the first cut into pieces of at
/// most `cut` bytes (detection looks at no more than 8 pieces).
fn replay(h: &mut Harness, c: ConnId, role: Role, text: &str, cut: usize) {
    let forward = client_direction(role);
    for (i, read) in reads(text).into_iter().enumerate() {
        let direction = if read.from_client { forward } else { forward.opposite() };
        for piece in read.bytes.chunks(if i == 0 { usize::MAX } else { cut }) {
            h.send(c, direction, piece);
        }
    }
}

fn text(span: &Span, key: &str) -> String {
    field(span, key).unwrap_or("-").to_string()
}

/// (operation, query, namespace, status code, rows) of every span.
fn summary(h: &Harness) -> Vec<(String, String, String, String, i64)> {
    h.spans()
        .iter()
        .map(|s| {
            (
                text(s, "db.operation.name"),
                text(s, "db.query.text"),
                text(s, "db.namespace"),
                text(s, "db.response.status_code"),
                int(s, "db.response.returned_rows").unwrap_or(-1),
            )
        })
        .collect()
}

fn row(op: &str, query: &str, ns: &str, status: &str, rows: i64) -> (String, String, String, String, i64) {
    (op.into(), query.into(), ns.into(), status.into(), rows)
}

#[test]
fn pipelined_benchmark_pairs_every_command_from_either_side() {
    for (fixture, operation) in [(BENCH_SET, "SET"), (BENCH_GET, "GET")] {
        // 16 commands per write: redis-benchmark -P 16.
        let first = &reads(fixture)[0].bytes;
        assert_eq!(
            first.windows(4).filter(|w| *w == b"*3\r\n" || *w == b"*2\r\n").count(),
            16
        );
        for role in [Role::Client, Role::Server, Role::Unknown] {
            let c = id(1, 3);
            let mut h = harness(c, role, settings());
            replay(&mut h, c, role, fixture, usize::MAX);
            let spans = h.spans();
            assert_eq!(spans.len(), 160, "{operation} seen from {role:?}");
            for span in &spans {
                assert_eq!(field(span, "db.system.name"), Some("redis"));
                assert_eq!(field(span, "db.operation.name"), Some(operation));
                let query = format!("{operation} key:__rand_int__");
                assert_eq!(field(span, "db.query.text"), Some(query.as_str()));
                assert_eq!(field(span, "db.namespace"), Some("0"));
                assert_eq!(span.status, SpanStatus::Unset);
                let kind = if role == Role::Server {
                    SpanKind::Server
                } else {
                    SpanKind::Client
                };
                assert_eq!(span.kind, kind);
            }
            assert_eq!(h.engine.counters(), &Counters::default(), "nothing lost");
        }
    }
}

fn cli_rows() -> Vec<(String, String, String, String, i64)> {
    vec![
        row("SET", "SET user:42", "0", "-", -1),
        row("GET", "GET user:42", "0", "-", -1),
        row("RPUSH", "RPUSH list:1", "0", "-", -1),
        row("GET", "GET list:1", "0", "WRONGTYPE", -1),
        row("LRANGE", "LRANGE list:1", "0", "-", 3),
        row("SELECT", "SELECT", "2", "-", -1),
        row("SET", "SET in:two", "2", "-", -1),
        row("INCR", "INCR counter", "2", "-", -1),
        row("CLIENT SETNAME", "CLIENT SETNAME", "2", "-", -1),
        row("CONFIG GET", "CONFIG GET", "2", "-", 2),
        row("MULTI", "MULTI", "2", "-", -1),
        row("INCR", "INCR counter", "2", "-", -1),
        row("GET", "GET user:42", "2", "-", -1),
        row("EXEC", "EXEC", "2", "-", 2),
        row("_OTHER", "_OTHER", "2", "ERR", -1),
        row("DEL", "DEL user:42", "2", "-", -1),
        row("GET", "GET user:42", "2", "-", -1),
    ]
}

#[test]
fn a_redis_cli_session_names_commands_errors_and_databases() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    replay(&mut h, c, Role::Client, CLI, usize::MAX);
    assert_eq!(summary(&h), cli_rows());
    let spans = h.spans();
    assert_eq!(spans[0].name.as_str(), "SET 0");
    assert_eq!(field(spans[3], "error.type"), Some("WRONGTYPE"));
    assert!(matches!(spans[3].status, SpanStatus::Error { .. }));
    assert_eq!(field(spans[3], "network.protocol.name"), Some("redis"));
    assert_eq!(int(spans[3], "server.port"), Some(6379));
    // Values and other arguments never leave the engine.
    let all = format!("{:?}", h.events);
    for secret in ["alice", "sonde-test", "maxmemory", "foo", "NOSUCHCMD"] {
        assert!(!all.contains(secret), "{secret} in a span");
    }
    assert_eq!(h.engine.counters(), &Counters::default());
}

#[test]
fn frames_cut_at_every_byte_pair_the_same() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Server, settings());
    replay(&mut h, c, Role::Server, CLI, 1);
    assert_eq!(summary(&h), cli_rows());
    assert_eq!(h.engine.counters(), &Counters::default());
}

#[test]
fn keys_are_kept_only_when_asked() {
    let c = id(1, 3);
    let mut settings = settings();
    settings.queries.redis_keys = false;
    let mut h = harness(c, Role::Client, settings);
    replay(&mut h, c, Role::Client, CLI, usize::MAX);
    let queries: Vec<String> = summary(&h).into_iter().map(|r| r.1).collect();
    assert_eq!(queries[..3], ["SET", "GET", "RPUSH"]);
    assert!(!format!("{:?}", h.events).contains("user:42"));
}

#[test]
fn an_auth_password_appears_nowhere() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    replay(&mut h, c, Role::Client, AUTH, usize::MAX);
    let ops: Vec<(String, String)> = summary(&h).into_iter().map(|r| (r.1, r.3)).collect();
    let want = [
        ("COMMAND DOCS", "NOAUTH"),
        ("COMMAND", "NOAUTH"),
        ("GET k", "NOAUTH"),
        ("AUTH", "WRONGPASS"),
        ("AUTH", "-"),
        ("SET k", "-"),
        ("GET k", "-"),
        ("HELLO", "-"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(ops, want);
    let metrics = h.engine.metrics(Timestamp::from_nanos(h.clock));
    let everything = format!("{:?}{:?}", h.events, metrics);
    assert!(!everything.contains(PASSWORD));
    assert!(!everything.contains("wrongpass"));
    assert!(!everything.contains("default"), "HELLO's user name is an argument too");
}

#[test]
fn resp3_replies_of_every_type_pair() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    replay(&mut h, c, Role::Client, RESP3, usize::MAX);
    let want = vec![
        row("HELLO", "HELLO", "0", "-", 7),
        row("HSET", "HSET h:1", "0", "-", -1),
        row("HGETALL", "HGETALL h:1", "0", "-", 2),
        row("SMEMBERS", "SMEMBERS nokey", "0", "-", 0),
        row("SADD", "SADD s:1", "0", "-", -1),
        row("SMEMBERS", "SMEMBERS s:1", "0", "-", 2),
        row("GET", "GET nokey", "0", "-", -1),
        row("INCRBYFLOAT", "INCRBYFLOAT fl", "0", "-", -1),
        row("EXISTS", "EXISTS h:1", "0", "-", -1),
        row("OBJECT ENCODING", "OBJECT ENCODING", "0", "-", -1),
        row("PING", "PING", "0", "-", -1),
    ];
    assert_eq!(summary(&h), want);
    assert_eq!(h.engine.counters(), &Counters::default());
}

#[test]
fn pub_sub_messages_and_pushes_answer_nothing() {
    for (fixture, want) in [
        (PUBSUB2, vec!["SUBSCRIBE", "PING", "UNSUBSCRIBE"]),
        (PUBSUB3, vec!["HELLO", "SUBSCRIBE", "PING", "UNSUBSCRIBE", "GET"]),
    ] {
        let c = id(1, 3);
        let mut h = harness(c, Role::Client, settings());
        replay(&mut h, c, Role::Client, fixture, usize::MAX);
        let ops: Vec<String> = summary(&h).into_iter().map(|r| r.0).collect();
        assert_eq!(ops, want);
        assert_eq!(h.engine.counters(), &Counters::default(), "no orphans");
    }
}

#[test]
fn attributes_annotate_a_reply_without_being_one() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    h.send(c, Egress, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n");
    h.send(
        c,
        Ingress,
        b"|1\r\n+key-popularity\r\n%1\r\n$1\r\nk\r\n,0.19\r\n$1\r\nv\r\n+PONG\r\n",
    );
    let ops: Vec<String> = summary(&h).into_iter().map(|r| r.0).collect();
    assert_eq!(ops, ["GET", "PING"]);
}

#[test]
fn inline_commands_pair() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Unknown, settings());
    h.send(c, Egress, b"PING\r\n");
    h.send(c, Ingress, b"+PONG\r\n");
    h.send(c, Egress, b"get mykey\r\n");
    h.send(c, Ingress, b"$-1\r\n");
    let queries: Vec<String> = summary(&h).into_iter().map(|r| r.1).collect();
    assert_eq!(queries, ["PING", "GET mykey"]);
}

#[test]
fn a_value_larger_than_the_capture_is_skipped_and_still_pairs() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    // Detection keeps at most 2 KiB: the connection starts small.
    h.send(c, Egress, b"*1\r\n$4\r\nPING\r\n");
    h.send(c, Ingress, b"+PONG\r\n");
    let value = vec![b'v'; 1 << 20];
    let mut set = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1048576\r\n".to_vec();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    // The capture keeps 4 KiB of the syscall.
    h.send_partial(c, Egress, &set[..4096], set.len() as u32);
    h.send(c, Ingress, b"+OK\r\n");
    h.send(c, Egress, b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
    let mut reply = b"$1048576\r\n".to_vec();
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\n");
    h.send_partial(c, Ingress, &reply[..4096], reply.len() as u32);
    let queries: Vec<String> = summary(&h).into_iter().map(|r| r.1).collect();
    assert_eq!(queries, ["PING", "SET big", "GET big"]);
    assert_eq!(h.engine.counters().skipped_body_gaps, 2);
    assert_eq!(h.engine.counters().gaps, 0);
}

#[test]
fn a_hole_outside_a_value_drops_what_waits_and_pairing_recovers() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    h.send(c, Egress, b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n");
    h.send(c, Ingress, b"$1\r\nx\r\n");
    h.send(c, Egress, b"*2\r\n$3\r\nGET\r\n$1\r\nb\r\n");
    // Its reply was moved but not captured.
    h.send_partial(c, Ingress, b"", 7);
    h.send(c, Egress, b"*2\r\n$3\r\nGET\r\n$1\r\nc\r\n");
    h.send(c, Ingress, b"$1\r\nz\r\n");
    let queries: Vec<String> = summary(&h).into_iter().map(|r| r.1).collect();
    assert_eq!(queries, ["GET a", "GET c"]);
    assert_eq!(h.engine.counters().gaps, 1);
    assert_eq!(h.engine.counters().unanswered_requests, 1);
}

#[test]
fn unanswered_commands_expire_and_are_counted() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    h.send(c, Egress, b"*2\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n");
    h.engine
        .expire(Timestamp::from_nanos(h.clock + 61_000_000_000), &mut h.events);
    assert!(h.spans().is_empty());
    assert_eq!(h.engine.counters().unanswered_requests, 1);
    assert_eq!(h.engine.memory(), 0);
}

/// First bytes of other protocols: HTTP, TLS, PostgreSQL, MySQL, DNS.
pub fn other_protocols() -> Vec<Vec<u8>> {
    vec![
        get("/"),
        ok(200, "hello"),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f".to_vec(),
        b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00app\x00database\x00app\x00\x00".to_vec(),
        b"J\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00".to_vec(),
        b"+OK POP3 server ready\r\n".to_vec(),
        reads(include_str!("fixtures/dns-tcp.txt"))[0].bytes.clone(),
    ]
}

#[test]
fn other_protocols_and_random_bytes_are_not_redis() {
    let settings = Settings {
        protocols: vec![Protocol::Redis],
        ..Settings::default()
    };
    let mut rng = fastrand::Rng::with_seed(17);
    let mut inputs = other_protocols();
    // Nulls where a command's counts go: replies a server may send, but
    // no client command.
    for data in [&b"*1\r\n$-1\r\n"[..], b"*-1\r\n$3\r\nGET\r\n"] {
        let client = Clue {
            direction: Egress,
            role: Role::Client,
            local_port: 40000,
            remote_port: 6379,
            datagram: false,
            dns_port: false,
            joined: false,
        };
        assert_eq!(detect(&settings, &client, data), None);
    }
    for _ in 0..100_000 {
        let len = rng.usize(1..64);
        inputs.push((0..len).map(|_| rng.u8(..)).collect());
    }
    for data in &inputs {
        for role in [Role::Client, Role::Server, Role::Unknown] {
            for direction in [Egress, Ingress] {
                let clue = Clue {
                    direction,
                    role,
                    local_port: 6379,
                    remote_port: 6379,
                    datagram: false,
                    dns_port: false,
                    joined: false,
                };
                assert_eq!(
                    detect(&settings, &clue, data),
                    None,
                    "{:?}",
                    String::from_utf8_lossy(data)
                );
            }
        }
    }
    // And through the engine, each a client's first bytes and a server's
    // answer of another protocol: no spans.
    let mut h = Harness::new(settings);
    let others = other_protocols();
    for (fd, data) in others.iter().enumerate() {
        let c = id(1, fd as u32);
        h.engine.open(conn(c, Role::Client, 6379, false));
        h.send(c, Egress, data);
        h.send(c, Ingress, &others[(fd + 1) % others.len()]);
    }
    assert!(h.spans().is_empty());
    assert_eq!(h.engine.counters().misdetected, 0);
}

#[test]
fn bytes_that_stop_being_resp_before_a_pair_fail_the_session() {
    let c = id(1, 3);
    let mut h = harness(c, Role::Client, settings());
    h.send(c, Egress, b"*1\r\n$4\r\nPING\r\n");
    h.send(c, Ingress, b"\x00\x01binary garbage\r\n");
    h.send(c, Ingress, b"+PONG\r\n");
    assert!(h.spans().is_empty());
    assert_eq!(h.engine.counters().misdetected, 1);
}
