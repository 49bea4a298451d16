//! HTTP/1.1 between a server and a client of this process's own —
//! keep-alive requests on one connection, and one request on each of
//! several new connections, a 404 among them — must give exactly one
//! server span and one client span per request, with the status codes the
//! server sent, and durations that nest (the server's inside the client's).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::ours;

/// Requests on the keep-alive connection (the last one a 404).
const KEEP_ALIVE: usize = 5;
/// New connections, one request each.
const SINGLE: usize = 3;
/// Requests made: each gives a server and a client span.
pub const REQUESTS: usize = KEEP_ALIVE + SINGLE;

/// Answers each request on `socket` until the client closes: 404 for
/// `/missing`, 200 otherwise. Reads and writes on the one fd (a dup'ed fd
/// is another connection to the kernel side).
fn serve(mut socket: TcpStream) -> std::io::Result<()> {
    let mut pending = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&buf[..n]);
            continue;
        };
        let response: &[u8] = if pending.starts_with(b"GET /missing ") {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        pending.drain(..end + 4);
        socket.write_all(response)?;
    }
}

/// One request and its whole response.
fn request(client: &mut TcpStream, path: &str) -> std::io::Result<()> {
    client.write_all(format!("GET {path} HTTP/1.1\r\nHost: conformance\r\n\r\n").as_bytes())?;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    // Both responses end with their body; read until one is complete.
    while !(got.ends_with(b"ok") || got.ends_with(b"not found")) {
        let n = client.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// Runs the requests; returns the server's port.
pub fn workload() -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        for _ in 0..1 + SINGLE {
            let (socket, _) = listener.accept()?;
            serve(socket)?;
        }
        Ok(())
    });
    let mut client = TcpStream::connect(("127.0.0.1", port))?;
    for i in 1..KEEP_ALIVE {
        request(&mut client, &format!("/items/{i}"))?;
    }
    request(&mut client, "/missing")?;
    drop(client);
    for _ in 0..SINGLE {
        let mut client = TcpStream::connect(("127.0.0.1", port))?;
        request(&mut client, "/items/new")?;
    }
    server.join().expect("server thread")?;
    Ok(port)
}

fn field<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.fields.get(key)
}

/// Checks the spans of the server on `port`; the summary names what was
/// compared.
pub fn verify(spans: &[Span], port: u16) -> Result<String, CheckError> {
    let spans: Vec<&Span> = spans.iter().filter(|s| ours(s, port)).collect();
    let of = |kind: SpanKind| spans.iter().copied().filter(move |s| s.kind == kind);
    let (servers, clients) = (of(SpanKind::Server).count(), of(SpanKind::Client).count());
    ensure(servers == REQUESTS && clients == REQUESTS, || {
        // Which ones: enough to tell a lost first request of a connection
        // from a lost last one when it fails on a kernel far away.
        let list = |kind: SpanKind| {
            of(kind)
                .map(|s| {
                    let path = field(s, "url.path").and_then(Value::as_str).unwrap_or("?");
                    format!("{path}@{}", s.start.as_nanos())
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "{REQUESTS} requests gave {servers} server and {clients} client spans (server: {}; client: {})",
            list(SpanKind::Server),
            list(SpanKind::Client)
        )
    })?;
    for kind in [SpanKind::Server, SpanKind::Client] {
        let not_found = of(kind)
            .filter(|s| field(s, "http.response.status_code") == Some(&Value::from(404u32)))
            .count();
        ensure(not_found == 1, || {
            format!("{kind:?} spans with status 404: {not_found}, not 1")
        })?;
        let missing = of(kind)
            .filter(|s| field(s, "url.path") == Some(&Value::from("/missing")))
            .count();
        ensure(missing == 1, || format!("{kind:?} spans of /missing: {missing}, not 1"))?;
    }
    let total = |kind: SpanKind| -> u64 {
        of(kind)
            .map(|s| s.end.as_nanos().saturating_sub(s.start.as_nanos()))
            .sum()
    };
    ensure(of(SpanKind::Client).all(|s| s.end > s.start), || {
        "a client span without duration".into()
    })?;
    ensure(total(SpanKind::Server) <= total(SpanKind::Client), || {
        format!(
            "server time {} ns exceeds client time {} ns",
            total(SpanKind::Server),
            total(SpanKind::Client)
        )
    })?;
    Ok(format!(
        "{REQUESTS} HTTP/1.1 requests ({KEEP_ALIVE} keep-alive, {SINGLE} on new connections): \
         {servers} server and {clients} client spans, one 404 each side"
    ))
}
