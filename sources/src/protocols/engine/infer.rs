//! Which protocol a connection speaks, from the first bytes seen on it,
//! and the session that parses it. One line per protocol in each function.
//!
//! Detection is the cheap, strict check of a message start; a session that
//! later finds the bytes are not its protocol says so ([`Session::failed`])
//! and the connection stops being parsed (a false positive, counted).
//!
//! [`Session::failed`]: super::session::Session::failed

use super::super::model::{Direction, Role};
use super::dns::{looks_like_dns, DnsSession};
use super::http::{looks_like_http, HttpSession};
use super::http2::{looks_like_http2, Http2Session};
use super::mysql::{looks_like_mysql, MysqlSession};
use super::postgres::{looks_like_postgres, PostgresSession};
use super::redis::{looks_like_redis, RedisSession};
use super::session::Session;
use super::settings::{Protocol, Settings};

/// What is known of a connection besides its bytes, for detection: some
/// protocols' first messages are only told apart by who sends them, and
/// well-known ports break ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clue {
    /// Which way the bytes went.
    pub direction: Direction,
    /// The traced process's side, when known.
    pub role: Role,
    /// The traced process's own port, 0 when unknown.
    pub local_port: u16,
    /// The other end's port, 0 when unknown.
    pub remote_port: u16,
    /// A datagram (UDP) socket.
    pub datagram: bool,
    /// One end is a configured DNS server port (`dns_ports`, 53 by default).
    pub dns_port: bool,
    /// The connection was open before the agent: its first bytes seen may
    /// be any message (an HTTP/2 frame rather than the preface).
    pub joined: bool,
}

impl Clue {
    /// The server's port when the role tells which end serves; both ports
    /// otherwise.
    pub fn server_ports(&self) -> [u16; 2] {
        match self.role {
            Role::Client => [self.remote_port, self.remote_port],
            Role::Server => [self.local_port, self.local_port],
            Role::Unknown => [self.local_port, self.remote_port],
        }
    }

    /// Whether `direction` carries requests, when the role tells.
    pub fn sends_requests(&self) -> Option<bool> {
        match self.role {
            Role::Client => Some(self.direction == Direction::Egress),
            Role::Server => Some(self.direction == Direction::Ingress),
            Role::Unknown => None,
        }
    }
}

/// The first enabled protocol whose start `data` (one direction's bytes
/// so far) looks like.
pub fn detect(settings: &Settings, clue: &Clue, data: &[u8]) -> Option<Protocol> {
    // The HTTP/2 preface is also an HTTP/1-like start line: it goes first.
    if settings.protocols.contains(&Protocol::Http2) && !clue.datagram && looks_like_http2(data, false) {
        return Some(Protocol::Http2);
    }
    settings.protocols.iter().copied().find(|protocol| match protocol {
        Protocol::Http2 => !clue.datagram && looks_like_http2(data, clue.joined),
        Protocol::Http1 => !clue.datagram && looks_like_http(data),
        Protocol::Postgres => !clue.datagram && looks_like_postgres(clue, data),
        Protocol::Mysql => !clue.datagram && looks_like_mysql(clue, data),
        Protocol::Redis => looks_like_redis(clue, data),
        Protocol::Dns => looks_like_dns(clue, data),
    })
}

/// A session for `protocol`; `requests` is the direction requests go when
/// the connection's role is known; `in_sync` when both streams are seen
/// from their first byte (a connection opened while the agent ran).
pub fn session(
    protocol: Protocol,
    requests: Option<Direction>,
    in_sync: bool,
    settings: &Settings,
) -> Box<dyn Session> {
    match protocol {
        Protocol::Http2 => Box::new(Http2Session::new(requests, in_sync, settings.max_connection_bytes)),
        Protocol::Http1 => Box::new(HttpSession::new(requests, in_sync)),
        Protocol::Postgres => Box::new(PostgresSession::new(requests, in_sync)),
        Protocol::Mysql => Box::new(MysqlSession::new(requests, in_sync)),
        Protocol::Redis => Box::new(RedisSession::new(requests)),
        Protocol::Dns => Box::new(DnsSession::new()),
    }
}
