//! DNS over UDP between an unconnected server socket and connected client
//! sockets of this process's own (as resolvers use them): two questions
//! sent together, answered in reverse order, and a name that does not
//! exist must give one server and one client span each, paired by id, with
//! the names, types and response codes the server sent.

use std::net::UdpSocket;
use std::time::Duration;

use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::ours;

/// `(id, name, type, exists)` of each question.
const QUESTIONS: [(u16, &str, u16, bool); 3] = [
    (0x1111, "a.conformance.test", 1, true),
    (0x2222, "a.conformance.test", 28, true),
    (0x3333, "nope.conformance.test", 1, false),
];
/// Questions asked: each gives a server and a client span.
pub const QUERIES: usize = QUESTIONS.len();

/// The server's socket (its port must be known before the programs load).
pub fn bind() -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    Ok(socket)
}

/// A query (`answer: None`) or a response.
fn message(id: u16, name: &str, qtype: u16, answer: Option<bool>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    let (flags, answers): (u16, u16) = match answer {
        None => (0x0100, 0),
        Some(true) => (0x8180, 1),
        // NXDOMAIN.
        Some(false) => (0x8183, 0),
    };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m.extend_from_slice(&answers.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 0]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    if answers > 0 {
        // A pointer to the question's name, TTL 60.
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
        if qtype == 28 {
            m.extend_from_slice(&[0, 16, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        } else {
            m.extend_from_slice(&[0, 4, 10, 0, 0, 1]);
        }
    }
    m
}

/// Asks the questions: the first two together on one connected socket,
/// answered in reverse order; the third on another.
pub fn workload(server: UdpSocket) -> std::io::Result<()> {
    let address = server.local_addr()?;
    let clients = [UdpSocket::bind("127.0.0.1:0")?, UdpSocket::bind("127.0.0.1:0")?];
    for client in &clients {
        client.connect(address)?;
        client.set_read_timeout(Some(Duration::from_secs(2)))?;
    }
    let query = |(id, name, qtype, _): (u16, &str, u16, bool)| message(id, name, qtype, None);
    clients[0].send(&query(QUESTIONS[0]))?;
    clients[0].send(&query(QUESTIONS[1]))?;
    let mut buf = [0u8; 512];
    let mut pending = Vec::new();
    for _ in 0..2 {
        let (_, from) = server.recv_from(&mut buf)?;
        pending.push((u16::from_be_bytes([buf[0], buf[1]]), from));
    }
    for (id, from) in pending.into_iter().rev() {
        let (_, name, qtype, exists) = QUESTIONS.iter().copied().find(|q| q.0 == id).expect("a known id");
        server.send_to(&message(id, name, qtype, Some(exists)), from)?;
    }
    for _ in 0..2 {
        clients[0].recv(&mut buf)?;
    }
    clients[1].send(&query(QUESTIONS[2]))?;
    let (_, from) = server.recv_from(&mut buf)?;
    let (id, name, qtype, exists) = QUESTIONS[2];
    server.send_to(&message(id, name, qtype, Some(exists)), from)?;
    clients[1].recv(&mut buf)?;
    Ok(())
}

fn text(span: &Span, key: &str) -> String {
    match span.fields.get(key) {
        Some(Value::Str(s)) => s.to_string(),
        _ => String::new(),
    }
}

/// Checks the spans of the server on `port`.
pub fn verify(spans: &[Span], port: u16) -> Result<String, CheckError> {
    let mut expected: Vec<(String, String, String)> = QUESTIONS
        .iter()
        .map(|(_, name, qtype, exists)| {
            let qtype = if *qtype == 28 { "AAAA" } else { "A" };
            let rcode = if *exists { "NOERROR" } else { "NXDOMAIN" };
            (name.to_string(), qtype.to_string(), rcode.to_string())
        })
        .collect();
    expected.sort();
    for kind in [SpanKind::Server, SpanKind::Client] {
        let mut got: Vec<(String, String, String)> = spans
            .iter()
            .filter(|s| ours(s, port) && s.kind == kind)
            .map(|s| {
                (
                    text(s, "dns.question.name"),
                    text(s, "dns.question.type"),
                    text(s, "dns.response_code"),
                )
            })
            .collect();
        got.sort();
        ensure(got == expected, || {
            format!("{QUERIES} DNS questions gave {kind:?} spans {got:?}, not {expected:?}")
        })?;
    }
    Ok(format!(
        "{QUERIES} DNS questions over UDP (two answered out of order, one NXDOMAIN): {QUERIES} server and {QUERIES} client spans"
    ))
}
