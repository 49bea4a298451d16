//! The kernel check of `connections` (the kernel matrix and
//! `tests/bpf_connections.rs` run it): with a policy of two ports, this
//! process listens on one of them (IPv4, and IPv6 where `::1` exists),
//! connects to it and accepts [`EACH`] times per family, fails one connect
//! to the other (closed) port, and connects once to a port outside the
//! policy; exactly the listeners, the connects (with their local ports)
//! and the accepts (with the connects' ports as their peers') are
//! reported, the refused connect with `ECONNREFUSED`, and the connect
//! outside the policy is counted as filtered by port.

use std::io::ErrorKind;
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};

use sonde_core::event::Event;
use sonde_ebpf::conformance::{ensure, CheckError};

use super::bpf::{CnEvent, CN_ACCEPT, CN_CONNECT, CN_LISTEN, CN_STAT_FILTERED_PORT};
use super::collect::{drain, Collector, ERROR};
use super::config::{ConnectionsSourceConfig, Match};
use crate::clock::Clock;

/// Connects of each family.
pub const EACH: usize = 8;

/// A port nothing listens on (bound, then released).
fn closed_port(addr: &str) -> Result<u16, CheckError> {
    let listener = TcpListener::bind(addr).map_err(CheckError::workload("bind a port"))?;
    let port = listener
        .local_addr()
        .map_err(CheckError::workload("read a port"))?
        .port();
    drop(listener);
    Ok(port)
}

/// A listener on `addr`, or None where the address does not exist (a
/// kernel or guest without IPv6).
fn listen(addr: &str) -> Result<Option<TcpListener>, CheckError> {
    match TcpListener::bind(addr) {
        Ok(listener) => Ok(Some(listener)),
        Err(e)
            if matches!(e.kind(), ErrorKind::AddrNotAvailable | ErrorKind::Unsupported)
                || e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
        {
            Ok(None)
        }
        Err(e) => Err(CheckError::workload("listen")(e)),
    }
}

/// Connects `EACH` times to `listener` and accepts each; returns the
/// connects' local ports.
fn storm(listener: &TcpListener) -> Result<Vec<u16>, CheckError> {
    let to = listener.local_addr().map_err(CheckError::workload("read a port"))?;
    let mut ports = Vec::new();
    for _ in 0..EACH {
        let client = TcpStream::connect(to).map_err(CheckError::workload("connect"))?;
        let (_server, peer) = listener.accept().map_err(CheckError::workload("accept"))?;
        ports.push(peer.port());
        drop(client);
    }
    Ok(ports)
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    // The policy's ports are known before load: the listeners' ports are
    // chosen by binding first (listen() comes after the load).
    let v4 = std::net::TcpListener::bind("127.0.0.1:0").map_err(CheckError::workload("bind"))?;
    let port = v4.local_addr().map_err(CheckError::workload("read a port"))?.port();
    drop(v4);
    let refused = closed_port("127.0.0.1:0")?;
    let outside = TcpListener::bind("127.0.0.1:0").map_err(CheckError::workload("bind"))?;
    let config = ConnectionsSourceConfig {
        matching: Match {
            port: vec![port, refused],
            ..Match::default()
        },
        include_self: true,
        ..ConnectionsSourceConfig::default()
    };
    let mut collector = Collector::load_with_labels(&config, "conformance".into(), &[])?;
    let mut ring = collector
        .programs_mut()
        .take_events()
        .ok_or_else(|| CheckError::Implausible("no ring buffer".to_string()))?;
    let filtered_before = collector.programs_mut().stats()?.get(CN_STAT_FILTERED_PORT);

    let v4 = listen(&format!("127.0.0.1:{port}"))?
        .ok_or_else(|| CheckError::Implausible("cannot listen on 127.0.0.1 again".to_string()))?;
    let mut ports = storm(&v4)?;
    let v6 = listen(&SocketAddr::from((Ipv6Addr::LOCALHOST, port)).to_string())?;
    if let Some(v6) = &v6 {
        ports.extend(storm(v6)?);
    }
    let failure = TcpStream::connect(("127.0.0.1", refused));
    ensure(failure.is_err(), || {
        format!("a connect to closed port {refused} succeeded")
    })?;
    drop(TcpStream::connect(
        outside.local_addr().map_err(CheckError::workload("read a port"))?,
    ));
    let _ = outside.accept();

    let pid = std::process::id();
    let events: Vec<CnEvent> = drain(&mut ring).into_iter().filter(|e| e.pid == pid).collect();
    let filtered = collector.programs_mut().stats()?.get(CN_STAT_FILTERED_PORT) - filtered_before;
    let families = if v6.is_some() { 2 } else { 1 };
    let of = |kind: u32| events.iter().filter(move |e| e.kind == kind);
    let connects: Vec<&CnEvent> = of(CN_CONNECT).filter(|e| e.ret == 0).collect();
    let mut connect_ports: Vec<u16> = connects.iter().map(|e| e.local_port).collect();
    let mut accept_peers: Vec<u16> = of(CN_ACCEPT).map(|e| e.remote_port).collect();
    connect_ports.sort_unstable();
    accept_peers.sort_unstable();
    ports.sort_unstable();
    ensure(connect_ports == ports, || {
        format!("connects reported from local ports {connect_ports:?}, made from {ports:?}")
    })?;
    ensure(accept_peers == ports, || {
        format!("accepts reported from peer ports {accept_peers:?}, made from {ports:?}")
    })?;
    ensure(
        connects.iter().all(|e| e.remote_port == port) && of(CN_ACCEPT).all(|e| e.local_port == port),
        || format!("events with another port than {port}: {events:?}"),
    )?;
    ensure(
        of(CN_CONNECT).filter(|e| e.is_ipv6()).count() == EACH * (families - 1),
        || {
            format!(
                "{} IPv6 connects reported: {events:?}",
                of(CN_CONNECT).filter(|e| e.is_ipv6()).count()
            )
        },
    )?;
    let listeners = of(CN_LISTEN).filter(|e| e.local_port == port).count();
    ensure(listeners == families, || {
        format!("{listeners} listeners reported on {port}, made {families}")
    })?;
    let clock = Clock::now();
    let failed: Vec<String> = of(CN_CONNECT)
        .filter(|e| e.ret < 0)
        .map(|e| {
            let event = collector.record(e, &clock);
            match event {
                Event::Log(log) => log.fields.get(ERROR).and_then(|v| v.as_str()).unwrap_or("").to_string(),
                _ => String::new(),
            }
        })
        .collect();
    ensure(failed == ["ECONNREFUSED"], || {
        format!("failed connects reported: {failed:?}")
    })?;
    ensure(filtered >= 1, || {
        format!("{filtered} connects filtered by port, made 1")
    })?;
    Ok(format!(
        "{} connects and accepts paired by port ({}), {listeners} listeners, 1 ECONNREFUSED, {filtered} filtered by port",
        connects.len(),
        if v6.is_some() { "IPv4 and IPv6" } else { "IPv4; no ::1" }
    ))
}
