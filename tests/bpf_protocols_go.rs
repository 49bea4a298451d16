//! `source "protocols"` and Go's `crypto/tls` (needs root and Debian's
//! `golang-go` and `golang-google-grpc-dev`): Go binaries built here,
//! offline, are read for their version, functions and `tls.Conn` layout;
//! the spans of a real Go HTTPS server and client, and of a Go gRPC server
//! and client over TLS, equal their own counts, also while goroutine
//! stacks grow and move during the probed calls; a stripped binary is
//! reported as not traceable.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::golang::{self, GoServer};
use common::tracer::{text, Tracer};
use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::testing::bpf_available_or_skip;
use sonde_sources::protocols::bpf::PROTO_STAT_RINGBUF_FULL;
use sonde_sources::protocols::config::ProtocolsSourceConfig;
use sonde_sources::protocols::gotls::{self, offsets, Inspection, OffsetsSource, Untraceable};
use sonde_sources::protocols::tls::TlsFinder;

#[test]
fn go_binaries_are_read_for_their_release_functions_and_conn_layout() {
    let dir = tempfile::tempdir().unwrap();
    let version = golang::version();
    let release = gotls::release(&version).unwrap();
    let with_dwarf = golang::build("gotls", dir.path(), "gotls", "");
    let Inspection::Traceable(go) = gotls::inspect(&with_dwarf) else {
        panic!("{:?}", gotls::inspect(&with_dwarf));
    };
    assert_eq!(go.build.go_version, version);
    assert_eq!(go.offsets_source, OffsetsSource::Dwarf);
    // The table this release's DWARF is checked against.
    let (table, _) = offsets::from_table(release).expect("a release with the register ABI");
    assert_eq!(go.offsets, table, "DWARF offsets of {version} = the table's");
    // Read ends at its RETs; Write is sent at its call.
    assert!(!go.read.returns.is_empty());
    assert!(go
        .read
        .returns
        .iter()
        .all(|at| *at > go.read.entry && *at < go.read.entry + 64 * 1024));
    assert!(go.write.returns.is_empty());
    assert_ne!(go.read.entry, go.write.entry);

    // Without DWARF (-w): the same functions, offsets from the table.
    let without_dwarf = golang::build("gotls", dir.path(), "nodwarf", "-w");
    let Inspection::Traceable(table_go) = gotls::inspect(&without_dwarf) else {
        panic!("{:?}", gotls::inspect(&without_dwarf));
    };
    assert_eq!(table_go.offsets_source, OffsetsSource::Table);
    assert_eq!(table_go.offsets, go.offsets);
    assert_eq!(table_go.read.returns.len(), go.read.returns.len());

    // Without symbols (-s -w): known to use crypto/tls, not traceable.
    let stripped = golang::build("gotls", dir.path(), "stripped", "-s -w");
    match gotls::inspect(&stripped) {
        Inspection::Untraceable(build, Untraceable::Stripped) => assert_eq!(build.go_version, version),
        other => panic!("{other:?}"),
    }
}

/// The source at its defaults, but for the connections of `ports` only:
/// other work on the machine (a benchmark, another test) neither fills the
/// ring buffer nor adds spans.
fn only_ports(ports: &[u16]) -> ProtocolsSourceConfig {
    ProtocolsSourceConfig {
        ports: ports.to_vec(),
        ..ProtocolsSourceConfig::default()
    }
}

/// `METHOD PATH STATUS` of spans: the server's own (by pid), or the
/// client's to `ports`, sorted.
fn spans_of(spans: &[Span], server_pid: u32, ports: &[u16], kind: SpanKind) -> Vec<String> {
    let mut lines: Vec<String> = spans
        .iter()
        .filter(|s| s.kind == kind)
        .filter(|s| match s.attributes.get(sonde_core::event::keys::PID) {
            Some(Value::Int(pid)) => (*pid as u32 == server_pid) == (kind == SpanKind::Server),
            _ => false,
        })
        .filter(|s| kind == SpanKind::Server || ports.iter().any(|p| text(s, "server.port") == p.to_string()))
        .map(|s| {
            format!(
                "{} {} {}",
                text(s, "http.request.method"),
                text(s, "url.path"),
                text(s, "http.response.status_code")
            )
        })
        .collect();
    lines.sort();
    lines
}

/// `GET PATH 200` once per request counted.
fn expected(counts: &[(String, usize)]) -> Vec<String> {
    let mut lines: Vec<String> = counts
        .iter()
        .flat_map(|(path, n)| std::iter::repeat_n(format!("GET {path} 200"), *n))
        .collect();
    lines.sort();
    lines
}

fn summary(lines: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for line in lines {
        *counts.entry(line.as_str()).or_default() += 1;
    }
    counts
}

#[test]
fn go_https_spans_equal_the_server_and_client_counts_while_stacks_move() {
    if !bpf_available_or_skip("go_https_spans_equal_the_server_and_client_counts_while_stacks_move") {
        return;
    }
    go_https_spans_equal_their_counts();
}

/// The objects older kernels load (5.8: no task storage; 5.11: entry
/// programs) trace Go the same way (the object is chosen by environment
/// variables, read at load: a test loading meanwhile may get an older
/// object too, which passes the same checks).
#[test]
fn the_older_objects_trace_go_tls_too() {
    use sonde_sources::protocols::bpf::{ObjectKind, ENTRY_PROGRAMS_ENV, NO_TASK_STORAGE_ENV};
    if !bpf_available_or_skip("the_older_objects_trace_go_tls_too") {
        return;
    }
    for (variable, kind) in [
        (NO_TASK_STORAGE_ENV, ObjectKind::Hash),
        (ENTRY_PROGRAMS_ENV, ObjectKind::TaskStorage),
    ] {
        std::env::set_var(variable, "1");
        assert_eq!(
            go_https_spans_equal_their_counts(),
            kind,
            "{variable} chooses the object"
        );
        std::env::remove_var(variable);
    }
}

/// Returns the object that was loaded.
fn go_https_spans_equal_their_counts() -> sonde_sources::protocols::bpf::ObjectKind {
    let dir = tempfile::tempdir().unwrap();
    let binary = golang::build("gotls", dir.path(), "gotls", "");
    // Started before the agent: found by its scan of running processes.
    let mut server = GoServer::start(&binary);
    let tracer = Tracer::start(&only_ports(&[server.port, server.deep_port]));
    // /deep recurses in the handler; on deep_port every (*tls.Conn).Read
    // of the server grows the goroutine's stack inside the probed call.
    let mut client = golang::client(&binary, server.port, 40, &["/plain", "/deep"]);
    client.extend(golang::client(&binary, server.deep_port, 25, &["/deepconn"]));
    assert_eq!(
        client,
        [
            ("/plain".to_string(), 40),
            ("/deep".to_string(), 40),
            ("/deepconn".to_string(), 25)
        ]
    );
    let pid = server.pid();
    let ports = [server.port, server.deep_port];
    let (collector, spans) = tracer.finish(Duration::from_secs(30), |spans| {
        spans_of(spans, pid, &ports, SpanKind::Server).len() >= 105
            && spans_of(spans, pid, &ports, SpanKind::Client).len() >= 105
    });
    assert!(server.alive(), "the traced Go server died");
    let served = server.stop();
    let mut served_sorted = served.clone();
    served_sorted.sort();
    let mut client_sorted = client.clone();
    client_sorted.sort();
    assert_eq!(served_sorted, client_sorted, "the server's own counts");
    let stats = collector.programs().stats().unwrap();
    assert_eq!(stats.get(PROTO_STAT_RINGBUF_FULL), 0, "{stats:?}");
    let server_spans = spans_of(&spans, pid, &ports, SpanKind::Server);
    let client_spans = spans_of(&spans, pid, &ports, SpanKind::Client);
    assert_eq!(
        summary(&server_spans),
        summary(&expected(&served)),
        "server spans = the Go server's counts"
    );
    assert_eq!(
        summary(&client_spans),
        summary(&expected(&client)),
        "client spans = the Go client's counts"
    );
    collector.programs().object_kind()
}

/// `METHOD CODE` of gRPC spans (`rpc.method`, `rpc.grpc.status_code`):
/// the server's own (by pid) or the client's to `port`; checks the
/// service and, for the streaming call, its message count.
fn grpc_calls(spans: &[Span], server_pid: u32, port: u16, kind: SpanKind) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for span in spans.iter().filter(|s| s.kind == kind) {
        let Some(Value::Int(pid)) = span.attributes.get(sonde_core::event::keys::PID) else {
            continue;
        };
        let ours = match kind {
            SpanKind::Server => *pid as u32 == server_pid,
            _ => *pid as u32 != server_pid && text(span, "server.port") == port.to_string(),
        };
        if !ours {
            continue;
        }
        assert_eq!(text(span, "rpc.system"), "grpc", "{span:?}");
        assert_eq!(text(span, "rpc.service"), "grpc.health.v1.Health", "{span:?}");
        let method = text(span, "rpc.method");
        if method == "Watch" {
            assert_eq!(text(span, "sonde.rpc.response.messages"), "3", "{span:?}");
        }
        let line = format!("{method} {}", text(span, "rpc.grpc.status_code"));
        *calls.entry(line).or_default() += 1;
    }
    calls
}

/// gRPC (HTTP/2 with HPACK, ALPN h2) over Go's crypto/tls: a server
/// started before the agent, a client after it; every handler recurses
/// deeply first, so stacks move while the server's calls are probed.
#[test]
fn go_grpc_over_tls_spans_equal_the_server_and_client_counts() {
    if !bpf_available_or_skip("go_grpc_over_tls_spans_equal_the_server_and_client_counts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let binary = golang::build("gogrpc", dir.path(), "gogrpc", "");
    let mut server = GoServer::start(&binary);
    let tracer = Tracer::start(&only_ports(&[server.port]));
    let n = 20;
    let client: BTreeMap<String, usize> = golang::client(&binary, server.port, n, &[]).into_iter().collect();
    let expected: BTreeMap<String, usize> = [("Check 0", n), ("Check 5", n), ("Watch 0", n)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(client, expected, "the Go client's own counts");
    let pid = server.pid();
    let port = server.port;
    let (collector, spans) = tracer.finish(Duration::from_secs(30), |spans| {
        grpc_calls(spans, pid, port, SpanKind::Server).values().sum::<usize>() >= 3 * n
            && grpc_calls(spans, pid, port, SpanKind::Client).values().sum::<usize>() >= 3 * n
    });
    assert!(server.alive(), "the traced Go gRPC server died");
    let served: BTreeMap<String, usize> = server.stop().into_iter().collect();
    assert_eq!(served, expected, "the Go server's own counts");
    let stats = collector.programs().stats().unwrap();
    assert_eq!(stats.get(PROTO_STAT_RINGBUF_FULL), 0, "{stats:?}");
    assert_eq!(
        grpc_calls(&spans, pid, port, SpanKind::Server),
        served,
        "server spans = the Go server's counts"
    );
    assert_eq!(
        grpc_calls(&spans, pid, port, SpanKind::Client),
        client,
        "client spans = the Go client's counts"
    );
}

#[test]
fn a_stripped_go_binary_is_reported_as_not_traceable() {
    let dir = tempfile::tempdir().unwrap();
    let binary = golang::build("gotls", dir.path(), "stripped", "-s -w");
    let server = GoServer::start(&binary);
    // What the source does at a process's first handshake.
    let mut finder = TlsFinder::default();
    assert!(finder.find(server.pid()).is_empty(), "nothing to attach to");
    let untraceable = finder.take_untraceable();
    assert_eq!(untraceable.len(), 1, "{untraceable:?}");
    assert_eq!(untraceable[0].reason, Untraceable::Stripped);
    assert!(finder.take_go_processes().is_empty());

    // `sonde doctor --pid` says so, in text and JSON.
    let out = common::sonde()
        .args(["doctor", "--pid", &server.pid().to_string()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains(&golang::version()), "{report}");
    assert!(report.contains("not traceable"), "{report}");
    assert!(report.contains("stripped"), "{report}");
    let out = common::sonde()
        .args(["doctor", "--json", "--pid", &server.pid().to_string()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["go"]["traceable"], false, "{json}");
    assert_eq!(json["go"]["uses_crypto_tls"], true, "{json}");

    // The same program with its symbols: traceable, by both.
    let full = golang::build("gotls", dir.path(), "gotls", "");
    let traced = GoServer::start(&full);
    let out = common::sonde()
        .args(["doctor", "--json", "--pid", &traced.pid().to_string()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["go"]["traceable"], true, "{json}");
    assert_eq!(json["go"]["offsets_source"], "dwarf", "{json}");
}

/// The kernel matrix's check, with its Go part: the program it builds,
/// named as the matrix names it in the guest.
#[test]
fn conformance_check_passes_with_go_tls() {
    let dir = tempfile::tempdir().unwrap();
    let binary = golang::build("gotls", dir.path(), "gotls", "");
    std::env::set_var(sonde_sources::protocols::conformance::gotls::GO_TLS_ENV, &binary);
    let summary = std::sync::Mutex::new(String::new());
    sonde_ebpf::testing::run_check("protocols conformance with Go TLS", || {
        let result = sonde_sources::protocols::conformance::check();
        if let Ok(text) = &result {
            *summary.lock().unwrap() = text.clone();
        }
        result
    });
    std::env::remove_var(sonde_sources::protocols::conformance::gotls::GO_TLS_ENV);
    let summary = summary.into_inner().unwrap();
    assert!(
        summary.is_empty() || summary.contains("Go crypto/tls"),
        "the check's summary names the Go part: {summary}"
    );
}
