//! HTTP/1.1 between a server and a client of this process's own —
//! keep-alive requests on one connection, and one request on each of
//! several new connections, a 404 among them — must give exactly one
//! server span and one client span per request, with the status codes the
//! server sent, and durations bounded by the workload's own clocks: the
//! server's spans hold its own handling time, the client's hold the
//! server's deliberate [`HANDLING`] delay and fit inside the client's own
//! timers.
//!
//! Spans are stamped at syscall exits, so a server span may start a little
//! before the client's (the server's read can return before the client's
//! write does, on another CPU) and end a little after it: comparing the
//! two sides directly failed on busy emulated kernels by tens of µs per
//! request. The bounds here hold whatever the scheduling.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::ours;

/// Requests on the keep-alive connection (the last one a 404).
const KEEP_ALIVE: usize = 5;
/// New connections, one request each.
const SINGLE: usize = 3;
/// Requests made: each gives a server and a client span.
pub const REQUESTS: usize = KEEP_ALIVE + SINGLE;
/// How long the server takes per request, between its read and its
/// write: far above a syscall's tail, so that the client's span (from its
/// write's exit) holds it.
const HANDLING: Duration = Duration::from_millis(2);
/// Most of a syscall's run after it delivered its data (tens of µs seen
/// under emulation): the client's write may return that much after the
/// server's read, inside the server's handling.
const TAIL: Duration = Duration::from_millis(1);

/// The workload's own clocks.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The server's port.
    pub port: u16,
    /// Time the server spent handling requests, from the return of the
    /// read that completed each to the write of its response (inside both
    /// spans of the request).
    pub handled: Duration,
    /// Time the client spent from writing each request to reading all of
    /// its response (around its span).
    pub waited: Duration,
}

/// Answers each request on `socket` until the client closes: 404 for
/// `/missing`, 200 otherwise. Reads and writes on the one fd (a dup'ed fd
/// is another connection to the kernel side). Returns the time it spent
/// handling them.
fn serve(mut socket: TcpStream) -> std::io::Result<Duration> {
    let mut pending = Vec::new();
    let mut buf = [0u8; 1024];
    let mut handled = Duration::ZERO;
    let mut read_at = Instant::now();
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            let n = socket.read(&mut buf)?;
            read_at = Instant::now();
            if n == 0 {
                return Ok(handled);
            }
            pending.extend_from_slice(&buf[..n]);
            continue;
        };
        std::thread::sleep(HANDLING);
        let response: &[u8] = if pending.starts_with(b"GET /missing ") {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        pending.drain(..end + 4);
        handled += read_at.elapsed();
        socket.write_all(response)?;
    }
}

/// One request and its whole response; returns the time from before the
/// write to after the last read.
fn request(client: &mut TcpStream, path: &str) -> std::io::Result<Duration> {
    let start = Instant::now();
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
    Ok(start.elapsed())
}

/// Runs the requests.
pub fn workload() -> std::io::Result<Workload> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = std::thread::spawn(move || -> std::io::Result<Duration> {
        let mut handled = Duration::ZERO;
        for _ in 0..1 + SINGLE {
            let (socket, _) = listener.accept()?;
            handled += serve(socket)?;
        }
        Ok(handled)
    });
    let mut waited = Duration::ZERO;
    let mut client = TcpStream::connect(("127.0.0.1", port))?;
    for i in 1..KEEP_ALIVE {
        waited += request(&mut client, &format!("/items/{i}"))?;
    }
    waited += request(&mut client, "/missing")?;
    drop(client);
    for _ in 0..SINGLE {
        let mut client = TcpStream::connect(("127.0.0.1", port))?;
        waited += request(&mut client, "/items/new")?;
    }
    let handled = server.join().expect("server thread")?;
    Ok(Workload { port, handled, waited })
}

fn field<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.fields.get(key)
}

/// Checks the spans of the workload's server; the summary names what was
/// compared.
pub fn verify(spans: &[Span], workload: &Workload) -> Result<String, CheckError> {
    let port = workload.port;
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
    let (handled, waited) = (workload.handled.as_nanos() as u64, workload.waited.as_nanos() as u64);
    let (server, client) = (total(SpanKind::Server), total(SpanKind::Client));
    ensure(server >= handled, || {
        format!("server spans {server} ns do not hold the server's own handling time, {handled} ns")
    })?;
    let delayed = (REQUESTS as u32 * (HANDLING - TAIL)).as_nanos() as u64;
    ensure(client >= delayed, || {
        format!("client spans {client} ns do not hold the server's delays less a syscall's tail, {delayed} ns")
    })?;
    ensure(client <= waited, || {
        format!("client spans {client} ns exceed the client's own timers, {waited} ns")
    })?;
    Ok(format!(
        "{REQUESTS} HTTP/1.1 requests ({KEEP_ALIVE} keep-alive, {SINGLE} on new connections): \
         {servers} server and {clients} client spans, one 404 each side; \
         server {server} ns ≥ its handling {handled} ns; {delayed} ns ≤ client {client} ns ≤ the client's timers {waited} ns"
    ))
}
