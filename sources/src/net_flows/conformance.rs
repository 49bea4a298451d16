//! `net_flows`: a loopback TCP transfer of known sizes between two threads
//! of this process, and UDP datagrams between two sockets; each end's
//! final record must carry the exact payload bytes (TCP from the socket's
//! counters through the ring buffer, UDP from the cgroup_skb programs).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use super::bpf::ClosedFlows;
use super::{
    Collector, NetFlowsSourceConfig, Reason, BYTES_RECEIVED, BYTES_SENT, DESTINATION_PORT, DIRECTION, FINAL, FLOW_LOG,
    SOURCE_PORT, TRANSPORT,
};
use sonde_core::event::{Event, Log, Value};

use sonde_ebpf::conformance::{ensure, CheckError};

const UP: usize = 100_000;
const DOWN: usize = 10_000;
const DATAGRAMS: usize = 5;
const DATAGRAM: usize = 300;

fn int(log: &Log, key: &str) -> i64 {
    log.fields.get(key).and_then(Value::as_int).unwrap_or(-1)
}

fn text<'a>(log: &'a Log, key: &str) -> &'a str {
    log.fields.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The final record of `transport` flow `from` → `to` seen from `direction`'s end.
fn find<'a>(logs: &'a [Log], transport: &str, from: u16, to: u16, direction: &str) -> Option<&'a Log> {
    logs.iter().find(|l| {
        text(l, TRANSPORT) == transport
            && int(l, SOURCE_PORT) == i64::from(from)
            && int(l, DESTINATION_PORT) == i64::from(to)
            && text(l, DIRECTION) == direction
            && l.fields.get(FINAL) == Some(&Value::Bool(true))
    })
}

fn tcp_transfer() -> std::io::Result<(u16, u16)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut up = vec![0u8; UP];
        s.read_exact(&mut up)?;
        s.write_all(&vec![3u8; DOWN])?;
        // Close after the client, as a server does.
        let _ = s.read(&mut [0u8; 1])?;
        Ok(())
    });
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    let client_port = c.local_addr()?.port();
    c.write_all(&vec![1u8; UP])?;
    c.read_exact(&mut vec![0u8; DOWN])?;
    drop(c);
    server
        .join()
        .map_err(|_| std::io::Error::other("server thread panicked"))??;
    Ok((client_port, port))
}

fn udp_exchange() -> std::io::Result<(u16, u16)> {
    let (a, b) = (UdpSocket::bind("127.0.0.1:0")?, UdpSocket::bind("127.0.0.1:0")?);
    let b_port = b.local_addr()?.port();
    let mut buf = [0u8; 2048];
    for _ in 0..DATAGRAMS {
        a.send_to(&[5u8; DATAGRAM], ("127.0.0.1", b_port))?;
        b.recv_from(&mut buf)?;
    }
    Ok((a.local_addr()?.port(), b_port))
}

/// Polls until `done`, or 10 s (emulated guests are slow).
fn gather(collector: &mut Collector, closed: &mut ClosedFlows, done: impl Fn(&[Log]) -> bool) -> Vec<Log> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    while !done(&all) && Instant::now() < deadline {
        all.extend(
            collector
                .poll(closed, Reason::ActiveTimeout)
                .into_iter()
                .filter_map(|e| match e {
                    Event::Log(log) if log.name.as_str() == FLOW_LOG => Some(*log),
                    _ => None,
                }),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    all
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let config = NetFlowsSourceConfig {
        // UDP flows end when idle: soon, so the check need not wait.
        idle_timeout: Duration::from_millis(300),
        ..NetFlowsSourceConfig::default()
    };
    let (mut collector, mut closed) = Collector::load(&config, "conformance".into(), &[])?;
    let (client, server) = tcp_transfer().map_err(CheckError::workload("loopback TCP transfer"))?;
    let (udp_a, udp_b) = udp_exchange().map_err(CheckError::workload("loopback UDP"))?;
    let logs = gather(&mut collector, &mut closed, |l| {
        find(l, "tcp", client, server, "client").is_some()
            && find(l, "tcp", client, server, "server").is_some()
            && find(l, "udp", udp_a, udp_b, "client").is_some()
            && find(l, "udp", udp_a, udp_b, "server").is_some()
    });
    let bytes = |transport, from, to, direction| {
        find(&logs, transport, from, to, direction).map(|l| (int(l, BYTES_SENT), int(l, BYTES_RECEIVED)))
    };
    let udp = (DATAGRAMS * DATAGRAM) as i64;
    let seen = [
        (
            "tcp client",
            bytes("tcp", client, server, "client"),
            (UP as i64, DOWN as i64),
        ),
        (
            "tcp server",
            bytes("tcp", client, server, "server"),
            (DOWN as i64, UP as i64),
        ),
        ("udp sender", bytes("udp", udp_a, udp_b, "client"), (udp, 0)),
        ("udp receiver", bytes("udp", udp_a, udp_b, "server"), (0, udp)),
    ];
    let wrong: Vec<String> = seen
        .iter()
        .filter(|(_, got, want)| *got != Some(*want))
        .map(|(end, got, want)| match got {
            Some(got) => format!("{end} (sent, received) {got:?}, want {want:?}"),
            None => format!("no final record for the {end}"),
        })
        .collect();
    ensure(wrong.is_empty(), || wrong.join("; "))?;
    Ok(format!(
        "TCP {UP}/{DOWN} B and UDP {DATAGRAMS}x{DATAGRAM} B exact at both ends"
    ))
}
