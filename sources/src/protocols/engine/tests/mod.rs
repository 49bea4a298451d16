//! Unit tests of the engine with synthetic chunks: each test writes the
//! bytes a real client and server would move, chunk by chunk, and checks
//! the spans and counters against what it wrote.

mod dns;
mod fuzz;
mod fuzz_h2;
mod fuzz_kv;
mod http;
mod http2;
mod lifecycle;
mod metrics;
mod misinference;
mod mysql;
mod postgres;
mod reassembly;
mod recorded;
mod redaction;
mod redis;
mod routes;
mod sql;
mod sqlreplay;
mod trace;

use std::collections::HashMap;
use std::net::SocketAddr;

use sonde_core::event::{Event, Span, Timestamp, Value};

use super::super::model::{Chunk, ConnId, ConnInfo, Direction, Role};
use super::{Counters, Engine, Settings};

/// The server's address in every test.
pub const SERVER: &str = "10.0.0.1:8080";
/// The client's address in every test.
pub const CLIENT: &str = "10.0.0.2:40000";
/// Nanoseconds between two chunks.
pub const TICK: u64 = 1_000_000;

/// An engine, a clock, and the next stream position of every direction.
pub struct Harness {
    pub engine: Engine,
    pub events: Vec<Event>,
    positions: HashMap<(ConnId, Direction), u64>,
    pub clock: u64,
    pub tid: u32,
    /// The datagram peer of the chunks sent next.
    pub peer: Option<SocketAddr>,
}

pub fn id(pid: u32, fd: u32) -> ConnId {
    ConnId { pid, fd, generation: 7 }
}

/// A connection seen from the `role` side, to the server on [`SERVER`].
pub fn info(id: ConnId, role: Role) -> ConnInfo {
    let port = SERVER.parse::<SocketAddr>().unwrap().port();
    recorded::conn(id, role, port, false)
}

impl Harness {
    pub fn new(settings: Settings) -> Self {
        Harness {
            engine: Engine::new(settings),
            events: Vec::new(),
            positions: HashMap::new(),
            clock: 1_000_000_000,
            tid: 100,
            peer: None,
        }
    }

    /// A harness with default settings and one open connection.
    pub fn with(id: ConnId, role: Role) -> Self {
        let mut h = Harness::new(Settings::default());
        h.engine.open(info(id, role));
        h
    }

    /// One syscall moving all of `bytes`, all captured.
    pub fn send(&mut self, id: ConnId, direction: Direction, bytes: &[u8]) {
        self.send_partial(id, direction, bytes, bytes.len() as u32);
    }

    /// One syscall moving `length` bytes of which `captured` were seen.
    pub fn send_partial(&mut self, id: ConnId, direction: Direction, captured: &[u8], length: u32) {
        let position = self.positions.entry((id, direction)).or_insert(0);
        let at = *position;
        *position += u64::from(length);
        self.chunk_at(id, direction, at, captured, length);
    }

    /// A chunk at an explicit position (reordering, duplicates, gaps).
    pub fn chunk_at(&mut self, id: ConnId, direction: Direction, position: u64, captured: &[u8], length: u32) {
        self.clock += TICK;
        let chunk = Chunk {
            conn: id,
            tid: self.tid,
            direction,
            position,
            length,
            data: captured,
            timestamp: Timestamp::from_nanos(self.clock),
            tls: false,
            peer: self.peer,
        };
        self.engine.data(chunk, &mut self.events);
    }

    /// Skips `n` bytes of a direction's stream (chunks never seen).
    pub fn lose(&mut self, id: ConnId, direction: Direction, n: u64) {
        *self.positions.entry((id, direction)).or_insert(0) += n;
    }

    pub fn close(&mut self, id: ConnId) {
        self.clock += TICK;
        self.engine
            .close(id, Timestamp::from_nanos(self.clock), &mut self.events);
    }

    /// The spans produced so far, in order.
    pub fn spans(&self) -> Vec<&Span> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Span(s) => Some(&**s),
                _ => None,
            })
            .collect()
    }
}

/// A span field as text.
pub fn field<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.fields.get(key).and_then(Value::as_str)
}

/// A span field as an integer.
pub fn int(span: &Span, key: &str) -> Option<i64> {
    span.fields.get(key).and_then(Value::as_int)
}

/// `GET {path} HTTP/1.1` with a Host header.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example\r\n\r\n").into_bytes()
}

/// A response with a `Content-Length` body.
pub fn ok(status: u16, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}
