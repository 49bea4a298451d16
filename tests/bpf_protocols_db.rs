//! `source "protocols"` on real database and DNS servers (needs root):
//! statement, command and query counts from the spans equal the servers'
//! own counters (`pg_stat_statements`, MariaDB's `Com_*`, Redis's
//! `INFO commandstats`, dnsmasq's query log); errors keep their codes; no
//! literal, password or argument of the workload reaches a span.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::servers::{run, Dnsmasq, Mariadb, Postgres, Redis, REDIS_PASSWORD};
use common::tracer::{text, Tracer};
use sonde_core::event::{Span, SpanKind, SpanStatus};
use sonde_ebpf::testing::bpf_available_or_skip;
use sonde_sources::protocols::config::ProtocolsSourceConfig;

fn config(protocol: &str, port: u16) -> ProtocolsSourceConfig {
    ProtocolsSourceConfig {
        protocols: vec![protocol.to_string()],
        ports: vec![port],
        ..ProtocolsSourceConfig::default()
    }
}

/// Every field and attribute value of every span, as one text.
fn everything(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| format!("{} {:?} {:?} {:?}", s.name, s.fields, s.attributes, s.status))
        .collect::<Vec<_>>()
        .join("\n")
}

fn of_kind(spans: &[Span], kind: SpanKind) -> Vec<&Span> {
    spans.iter().filter(|s| s.kind == kind).collect()
}

/// The first word of each span's `db.query.text`, upper case, counted.
fn first_words<'a>(spans: impl IntoIterator<Item = &'a Span>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for span in spans {
        let query = text(span, "db.query.text");
        let word = query.split_whitespace().next().unwrap_or("");
        *counts.entry(word.trim_end_matches(';').to_uppercase()).or_default() += 1;
    }
    counts
}

#[test]
fn postgres_statements_equal_pg_stat_statements_without_literals() {
    if !bpf_available_or_skip("postgres_statements_equal_pg_stat_statements_without_literals") {
        return;
    }
    let pg = Postgres::start();
    run(pg.pgbench().args(["-i", "-s", "1", "-q", "postgres"]));
    pg.psql("SELECT pg_stat_statements_reset()", "disable");

    let tracer = Tracer::start(&config("postgresql", pg.port));
    for mode in ["simple", "extended", "prepared"] {
        let out = run(pg.pgbench().args(["-n", "-c", "1", "-t", "40", "-M", mode, "postgres"]));
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("processed: 40/40"), "{out}");
    }
    pg.psql("SELECT 'sonde-literal-secret' AS s, 987654321 AS n", "disable");
    // Through TLS (sslmode=require: SSLRequest, then OpenSSL's plaintext).
    pg.psql("SELECT 'tls-literal-secret', 4242424", "require");
    let failed = pg
        .psql_command("SELECT * FROM no_such_table_42", "disable")
        .output()
        .unwrap();
    assert!(!failed.status.success(), "the failing statement failed");
    // One 40-transaction run is 7 statements each (tpcb-like), three runs.
    let (collector, spans) = tracer.finish(Duration::from_secs(60), |spans| {
        of_kind(spans, SpanKind::Client).len() >= 3 * 40 * 7 + 3
            && of_kind(spans, SpanKind::Server).len() >= 3 * 40 * 7 + 3
    });
    drop(collector);

    // What the server counted (successful statements only), by first word.
    let counted = pg.psql(
        "SELECT query, calls FROM pg_stat_statements \
         WHERE query NOT LIKE '%pg_stat_statements%'",
        "disable",
    );
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in counted.lines() {
        let (query, calls) = line.rsplit_once('|').unwrap();
        let word = query.split_whitespace().next().unwrap_or("").to_uppercase();
        *expected.entry(word).or_default() += calls.trim().parse::<u64>().unwrap();
    }
    // pg_stat_statements misses utility statements sent with the extended
    // protocol (BEGIN/END of `-M extended`): those two come from pgbench's
    // own count, one each per transaction.
    expected.insert("BEGIN".into(), 3 * 40);
    expected.insert("END".into(), 3 * 40);
    assert!(
        expected.get("UPDATE").copied().unwrap_or(0) >= 3 * 40 * 3,
        "{expected:?}"
    );
    for kind in [SpanKind::Client, SpanKind::Server] {
        let spans = of_kind(&spans, kind);
        let (ok, failed): (Vec<&Span>, Vec<&Span>) = spans
            .iter()
            .partition(|s| !matches!(s.status, SpanStatus::Error { .. }));
        assert_eq!(first_words(ok), expected, "{kind:?} spans by statement");
        assert_eq!(failed.len(), 1, "{kind:?}: {failed:#?}");
        assert_eq!(text(failed[0], "db.response.status_code"), "42P01");
        assert_eq!(text(failed[0], "error.type"), "42P01");
        for span in &spans {
            assert_eq!(text(span, "db.system.name"), "postgresql");
            // From the startup message: the server side too (a forked
            // backend's socket is seen from its first byte).
            assert_eq!(text(span, "db.namespace"), "postgres", "{span:#?}");
        }
    }
    let literal: Vec<&Span> = spans
        .iter()
        .filter(|s| ["SELECT ? AS s, ? AS n", "SELECT ?, ?"].contains(&text(s, "db.query.text").as_str()))
        .collect();
    assert_eq!(
        literal.len(),
        4,
        "both literal statements (one through TLS), client and server: {literal:#?}"
    );
    let all = everything(&spans);
    for secret in ["sonde-literal-secret", "987654321", "tls-literal-secret", "4242424"] {
        assert!(!all.contains(secret), "{secret} reached a span");
    }
}

#[test]
fn mariadb_statements_equal_its_status_counters() {
    if !bpf_available_or_skip("mariadb_statements_equal_its_status_counters") {
        return;
    }
    let db = Mariadb::start();
    let names = [
        "Com_select",
        "Com_insert",
        "Com_create_table",
        "Com_stmt_prepare",
        "Com_stmt_execute",
    ];
    let before: Vec<u64> = names.iter().map(|n| db.status(n)).collect();

    let tracer = Tracer::start(&config("mysql", db.port));
    run(Command::new("mysqlslap")
        .args(["-h", "127.0.0.1", "-u", "sonde", "-psonde-pw", "--skip-ssl"])
        .args(["-P", &db.port.to_string(), "--create-schema=shop", "--no-drop"])
        .args([
            "--query=SELECT 'slap-secret-literal', 31337",
            "--number-of-queries=50",
            "--concurrency=1",
        ]));
    run(db.client().args([
        "shop",
        "-e",
        "CREATE TABLE items (id INT, name TEXT); INSERT INTO items VALUES (1, 'item-secret-name');",
    ]));
    let python = format!(
        "import mysql.connector\n\
         c = mysql.connector.connect(host='127.0.0.1', port={}, user='sonde', password='sonde-pw', database='shop', ssl_disabled=True)\n\
         cur = c.cursor(prepared=True)\n\
         for i in range(20):\n    cur.execute('SELECT name FROM items WHERE id = %s', (i,))\n    cur.fetchall()\n\
         c.close()\n",
        db.port
    );
    run(Command::new(".venv/bin/python").args(["-c", &python]));
    let failed = db
        .client()
        .args(["shop", "-e", "SELECT * FROM no_such_table_42"])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    // mysqlslap's 50, the 20 executes, the failing one: 71 SELECTs a side.
    let (_, spans) = tracer.finish(Duration::from_secs(60), |spans| {
        [SpanKind::Client, SpanKind::Server].iter().all(|kind| {
            of_kind(spans, *kind)
                .iter()
                .filter(|s| text(s, "db.operation.name") == "SELECT")
                .count()
                >= 71
        })
    });
    let after: Vec<u64> = names.iter().map(|n| db.status(n)).collect();
    let delta: BTreeMap<&str, u64> = names
        .iter()
        .zip(after.iter().zip(&before))
        .map(|(n, (a, b))| (*n, a - b))
        .collect();
    for kind in [SpanKind::Client, SpanKind::Server] {
        let spans = of_kind(&spans, kind);
        let op = |name: &str| spans.iter().filter(|s| text(s, "db.operation.name") == name).count() as u64;
        let mut seen: BTreeMap<(String, String), u64> = BTreeMap::new();
        for s in &spans {
            *seen
                .entry((text(s, "db.operation.name"), text(s, "db.query.text")))
                .or_default() += 1;
        }
        assert_eq!(
            op("SELECT"),
            delta["Com_select"],
            "{kind:?} SELECTs vs Com_select {delta:?}: {seen:#?}"
        );
        assert_eq!(
            op("INSERT"),
            delta["Com_insert"],
            "{kind:?} INSERTs vs Com_insert {delta:?}"
        );
        assert_eq!(op("CREATE"), delta["Com_create_table"], "{kind:?}: {delta:?}");
        let executes = spans
            .iter()
            .filter(|s| text(s, "sonde.db.statement.name") != "None")
            .count() as u64;
        assert_eq!(
            executes, delta["Com_stmt_execute"],
            "{kind:?} executes vs Com_stmt_execute"
        );
        let errors: Vec<&&Span> = spans
            .iter()
            .filter(|s| matches!(s.status, SpanStatus::Error { .. }))
            .collect();
        assert_eq!(errors.len(), 1, "{kind:?}: {errors:#?}");
        assert_eq!(text(errors[0], "db.response.status_code"), "1146");
        assert!(spans.iter().all(|s| text(s, "db.system.name") == "mariadb"));
    }
    let all = everything(&spans);
    for secret in ["slap-secret-literal", "31337", "item-secret-name", "sonde-pw"] {
        assert!(!all.contains(secret), "{secret} reached a span");
    }
}

#[test]
fn redis_commands_equal_commandstats_and_the_password_never_appears() {
    if !bpf_available_or_skip("redis_commands_equal_commandstats_and_the_password_never_appears") {
        return;
    }
    let redis = Redis::start();
    let before = redis.commandstats();
    let tracer = Tracer::start(&config("redis", redis.port));
    run(Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "-a", REDIS_PASSWORD])
        .args(["-n", "1600", "-P", "16", "-c", "2", "-t", "get,set,lpush", "-q"]));
    run(&mut redis.cli(&["SET", "user:42", "value-secret-xyz"]));
    let wrong = redis.cli(&["LPUSH", "user:42", "x"]).output().unwrap();
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("WRONGTYPE"));
    let (_, spans) = tracer.finish(Duration::from_secs(60), |spans| {
        of_kind(spans, SpanKind::Client).len() >= 3 * 1600 + 2
    });
    let after = redis.commandstats();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (name, calls) in &after {
        // The AUTH and INFO of this very reading were not traced.
        let untraced = u64::from(name == "AUTH");
        let delta = calls - before.get(name).copied().unwrap_or(0) - untraced;
        if delta > 0 && name != "INFO" {
            expected.insert(name.replace('|', " "), delta);
        }
    }
    for kind in [SpanKind::Client, SpanKind::Server] {
        let mut got: BTreeMap<String, u64> = BTreeMap::new();
        for span in of_kind(&spans, kind) {
            *got.entry(text(span, "db.operation.name")).or_default() += 1;
        }
        assert_eq!(got, expected, "{kind:?} commands vs INFO commandstats");
        let errors: Vec<&Span> = of_kind(&spans, kind)
            .into_iter()
            .filter(|s| matches!(s.status, SpanStatus::Error { .. }))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(text(errors[0], "db.response.status_code"), "WRONGTYPE");
    }
    assert!(spans.iter().any(|s| text(s, "db.query.text") == "SET user:42"));
    let all = everything(&spans);
    assert!(!all.contains(REDIS_PASSWORD), "the AUTH password reached a span");
    assert!(!all.contains("value-secret-xyz"), "a SET value reached a span");
}

fn dig(server: &Dnsmasq, args: &[&str]) -> String {
    let out = run(Command::new("dig")
        .args(["+time=2", "+tries=1", "-p", &server.address.port().to_string()])
        .arg(format!("@{}", server.address.ip()))
        .args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dns_queries_equal_dnsmasq_log_with_names_types_and_codes() {
    if !bpf_available_or_skip("dns_queries_equal_dnsmasq_log_with_names_types_and_codes") {
        return;
    }
    let dnsmasq = Dnsmasq::start("127.0.0.1", common::free_port());
    let logged_before = dnsmasq.queries().len();
    let config = ProtocolsSourceConfig {
        protocols: vec!["dns".into()],
        dns_ports: vec![dnsmasq.address.port()],
        ..ProtocolsSourceConfig::default()
    };
    let tracer = Tracer::start(&config);
    assert!(dig(&dnsmasq, &["www.example.test", "A"]).contains("10.1.2.3"));
    assert!(dig(&dnsmasq, &["www.example.test", "AAAA"]).contains("fd00::3"));
    assert!(dig(&dnsmasq, &["host.missing.test", "A"]).contains("NXDOMAIN"));
    assert!(dig(&dnsmasq, &["+tcp", "tcp.example.test", "A"]).contains("10.1.2.3"));
    let (_, spans) = tracer.finish(Duration::from_secs(30), |spans| {
        of_kind(spans, SpanKind::Client).len() >= 4 && of_kind(spans, SpanKind::Server).len() >= 4
    });
    let logged: Vec<(String, String)> = dnsmasq.queries()[logged_before..].to_vec();
    assert_eq!(logged.len(), 4, "{logged:?}");
    for kind in [SpanKind::Client, SpanKind::Server] {
        let mut got: Vec<(String, String)> = of_kind(&spans, kind)
            .iter()
            .map(|s| (text(s, "dns.question.type"), text(s, "dns.question.name")))
            .collect();
        got.sort();
        let mut expected = logged.clone();
        expected.sort();
        assert_eq!(got, expected, "{kind:?} spans vs dnsmasq's log");
        let nx: Vec<&Span> = of_kind(&spans, kind)
            .into_iter()
            .filter(|s| text(s, "dns.question.name") == "host.missing.test")
            .collect();
        assert_eq!(text(nx[0], "dns.response_code"), "NXDOMAIN");
        assert!(matches!(nx[0].status, SpanStatus::Error { .. }));
    }
    let client_a = spans
        .iter()
        .find(|s| {
            s.kind == SpanKind::Client
                && text(s, "dns.question.name") == "www.example.test"
                && text(s, "dns.question.type") == "A"
        })
        .unwrap();
    assert_eq!(text(client_a, "dns.answers"), "10.1.2.3");
    assert_eq!(text(client_a, "server.port"), dnsmasq.address.port().to_string());
    let server_a = spans
        .iter()
        .find(|s| {
            s.kind == SpanKind::Server
                && text(s, "dns.question.name") == "www.example.test"
                && text(s, "dns.question.type") == "A"
        })
        .unwrap();
    assert_eq!(text(server_a, "client.address"), "127.0.0.1", "the datagram's sender");
}

/// glibc's resolver (`getent ahosts`) sends A and AAAA together with
/// `sendmmsg` on a connected socket to port 53; the resolver is pointed
/// at a dnsmasq on 127.0.0.1:53 in a private mount namespace.
#[test]
fn glibc_lookups_give_one_span_per_query() {
    if !bpf_available_or_skip("glibc_lookups_give_one_span_per_query") {
        return;
    }
    let dnsmasq = Dnsmasq::start("127.0.0.1", 53);
    let logged_before = dnsmasq.queries().len();
    let resolv = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(resolv.path(), "nameserver 127.0.0.1\noptions attempts:1 timeout:2\n").unwrap();
    let config = ProtocolsSourceConfig {
        protocols: vec!["dns".into()],
        ..ProtocolsSourceConfig::default()
    };
    let tracer = Tracer::start(&config);
    let script = format!(
        "mount --bind {} /etc/resolv.conf && getent ahosts glibc.example.test",
        resolv.path().display()
    );
    let out = run(Command::new("unshare").args(["-m", "sh", "-c", &script]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("10.1.2.3"));
    let (_, spans) = tracer.finish(Duration::from_secs(30), |spans| {
        of_kind(spans, SpanKind::Client)
            .iter()
            .filter(|s| text(s, "dns.question.name") == "glibc.example.test")
            .count()
            >= 2
    });
    let logged: Vec<(String, String)> = dnsmasq.queries()[logged_before..].to_vec();
    let mut got: Vec<(String, String)> = of_kind(&spans, SpanKind::Client)
        .iter()
        .filter(|s| text(s, "dns.question.name") == "glibc.example.test")
        .map(|s| (text(s, "dns.question.type"), text(s, "dns.question.name")))
        .collect();
    got.sort();
    let mut expected = logged;
    expected.sort();
    assert_eq!(got, expected, "getent's spans vs dnsmasq's log");
    assert!(got.iter().any(|(t, _)| t == "AAAA") && got.iter().any(|(t, _)| t == "A"));
}

/// HTTP and random bytes to a server on the well-known database ports'
/// stand-in (a plain TCP echo server): no protocol claims them, no span.
#[test]
fn http_and_random_bytes_give_no_database_span() {
    use std::io::{Read, Write};
    if !bpf_available_or_skip("http_and_random_bytes_give_no_database_span") {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = ProtocolsSourceConfig {
        protocols: vec!["postgresql".into(), "mysql".into(), "redis".into()],
        ports: vec![port],
        ..ProtocolsSourceConfig::default()
    };
    let tracer = Tracer::start(&config);
    let server = std::thread::spawn(move || {
        for _ in 0..40 {
            let (mut socket, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.read(&mut buf) {
                if n == 0 || socket.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let mut rng = 0x2545f4914f6cdd1du64;
    for i in 0..40 {
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        for _ in 0..5 {
            let message: Vec<u8> = if i % 2 == 0 {
                b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
            } else {
                (0..200)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng as u8
                    })
                    .collect()
            };
            client.write_all(&message).unwrap();
            let mut echoed = vec![0; message.len()];
            client.read_exact(&mut echoed).unwrap();
        }
    }
    server.join().unwrap();
    let (_, spans) = tracer.finish(Duration::from_secs(2), |_| false);
    assert!(spans.is_empty(), "false spans: {spans:#?}");
}
