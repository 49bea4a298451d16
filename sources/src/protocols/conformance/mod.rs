//! The kernel check of `protocols` (the kernel matrix and the protocol
//! tests run it): this process talks to itself over loopback in each kind
//! of traffic the capture layer treats differently, and each must give
//! exactly the spans it should:
//!
//! - [`http`]: HTTP/1.1 over TCP (the stream path, the HTTP gate);
//! - [`redis`]: RESP commands, pipelined (another gate, FIFO pairing);
//! - [`dns`]: DNS over UDP, a connected client and an unconnected server
//!   (the datagram path and each datagram's peer);
//! - [`replay`]: PostgreSQL and MariaDB sessions recorded from the real
//!   servers, replayed byte for byte (their gates, SSL refusal, logins);
//! - [`gotls`]: a Go HTTPS server and client through the Go `crypto/tls`
//!   probes, when a Go test program is named ([`gotls::GO_TLS_ENV`]).
//! - [`http2`]: a gRPC session over h2c recorded from grpcio, replayed the
//!   same way (the preface gate, frames, HPACK, trailers).

mod dns;
pub mod gotls;
mod http;
mod http2;
mod redis;
mod replay;

use std::time::{Duration, Instant};

use sonde_core::event::{Event, Span, Value};
use sonde_ebpf::conformance::CheckError;

use super::collect::Collector;
use super::config::ProtocolsSourceConfig;

/// Whether `span` is this process's, with `port` the server's.
fn ours(span: &Span, port: u16) -> bool {
    span.attributes.get(sonde_core::event::keys::PID) == Some(&Value::from(std::process::id()))
        && span.fields.get("server.port") == Some(&Value::from(u32::from(port)))
}

/// Runs the check; the summary names what was compared.
pub fn check() -> Result<String, CheckError> {
    // The DNS port is a load-time setting: bind the server first.
    let dns_server = dns::bind().map_err(CheckError::workload("a UDP socket on loopback"))?;
    let dns_port = dns_server
        .local_addr()
        .map_err(CheckError::workload("a UDP socket"))?
        .port();
    // Started before the programs load: found by the scan at start.
    let go = gotls::program();
    let go_server = match &go {
        Some(program) => Some(gotls::start(program).map_err(CheckError::workload("the Go HTTPS server"))?),
        None => None,
    };
    let config = ProtocolsSourceConfig {
        // Libraries are looked for only with the Go program (its probes).
        tls: go.is_some(),
        protocols: vec![
            "http".into(),
            "http2".into(),
            "redis".into(),
            "dns".into(),
            "postgresql".into(),
            "mysql".into(),
        ],
        dns_ports: vec![dns_port],
        ..ProtocolsSourceConfig::default()
    };
    let (mut collector, mut records) = Collector::load_with(&config, "conformance".to_string(), &[], false)?;
    let http_workload = http::workload().map_err(CheckError::workload("HTTP over loopback"))?;
    let redis_port = redis::workload().map_err(CheckError::workload("RESP over loopback"))?;
    dns::workload(dns_server).map_err(CheckError::workload("DNS over loopback UDP"))?;
    let postgres_port = replay::workload(&replay::POSTGRES).map_err(CheckError::workload("a PostgreSQL replay"))?;
    let mariadb_port = replay::workload(&replay::MARIADB).map_err(CheckError::workload("a MariaDB replay"))?;
    let h2c_port = replay::workload(&replay::H2C_GRPC).map_err(CheckError::workload("an h2c gRPC replay"))?;
    let go_client = match (&go, &go_server) {
        (Some(program), Some(server)) => {
            Some(gotls::workload(program, server).map_err(CheckError::workload("the Go HTTPS client"))?)
        }
        _ => None,
    };
    let go_pids: Vec<u32> = go_server.iter().map(gotls::Server::pid).chain(go_client).collect();
    let expected = 2 * go_client.map_or(0, |_| gotls::REQUESTS)
        + 2 * (http::REQUESTS
            + redis::COMMANDS
            + dns::QUERIES
            + replay::POSTGRES.statements()
            + replay::MARIADB.statements()
            + http2::CALLS);
    let mut spans: Vec<Span> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ports = [
        http_workload.port,
        redis_port,
        dns_port,
        postgres_port,
        mariadb_port,
        h2c_port,
    ];
    let wanted = |s: &Span| ports.iter().any(|port| ours(s, *port)) || go_pids.iter().any(|pid| gotls::ours(s, *pid));
    while spans.len() < expected && Instant::now() < deadline {
        let (events, _) = collector.drain(&mut records);
        spans.extend(events.into_iter().filter_map(|e| match e {
            Event::Span(s) if wanted(&s) => Some(*s),
            _ => None,
        }));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut parts = vec![
        http::verify(&spans, &http_workload)?,
        redis::verify(&spans, redis_port)?,
        dns::verify(&spans, dns_port)?,
        replay::verify(&replay::POSTGRES, &spans, postgres_port)?,
        replay::verify(&replay::MARIADB, &spans, mariadb_port)?,
        http2::verify(&spans, h2c_port)?,
    ];
    if let (Some(server), Some(client)) = (&go_server, go_client) {
        parts.push(gotls::verify(&spans, server.pid(), client)?);
    }
    Ok(format!(
        "{} ({:?} object)",
        parts.join("; "),
        collector.programs().object_kind()
    ))
}
