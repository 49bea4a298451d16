//! What every protocol module implements, and what it produces: the
//! engine finds a connection's protocol from its first bytes
//! ([`super::infer`]), then hands each in-order piece to that protocol's
//! [`Session`], which pairs requests with responses into [`Exchange`]s.
//! Adding a protocol (Postgres, Redis, DNS, HTTP/2) is a module with a
//! `Session`, a [`Detail`] variant, a line in `infer` and its span fields.

use std::net::SocketAddr;

use sonde_core::event::Timestamp;

use super::super::model::Direction;
use super::counters::Counters;
use super::db::DbExchange;
use super::dns::DnsExchange;
use super::http::HttpExchange;
use super::http2::Http2Exchange;
use super::reassembly::Piece;
use super::settings::{Protocol, Settings};
use super::trace_context::{ActiveSpans, Context};

/// A request and its response.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The protocol.
    pub protocol: Protocol,
    /// Which way the request went (Egress: the process is the client).
    pub request_direction: Direction,
    /// The request's first byte.
    pub start: Timestamp,
    /// The response's last byte.
    pub end: Timestamp,
    /// The span's ids.
    pub context: Context,
    /// Its parent span, when trace context said so.
    pub parent: Option<[u8; 8]>,
    /// The other end, when it is not the connection's (a datagram on an
    /// unconnected socket: the piece's `peer`).
    pub remote: Option<SocketAddr>,
    /// What the protocol says.
    pub detail: Detail,
}

/// Protocol-specific fields of an exchange.
#[derive(Clone, Debug)]
pub enum Detail {
    /// HTTP/1.x.
    Http(Box<HttpExchange>),
    /// One HTTP/2 stream (gRPC calls included).
    Http2(Box<Http2Exchange>),
    /// A database statement or command (PostgreSQL, MySQL, Redis).
    Db(Box<DbExchange>),
    /// A DNS query and its answer.
    Dns(Box<DnsExchange>),
}

/// What a session may use and fill while it parses.
pub struct Scope<'a> {
    /// The engine's options.
    pub settings: &'a Settings,
    /// What was lost.
    pub counters: &'a mut Counters,
    /// Server spans active per thread.
    pub active: &'a mut ActiveSpans,
    /// The connection's process.
    pub pid: u32,
    /// Finished exchanges.
    pub out: &'a mut Vec<Exchange>,
}

/// A connection leaving one protocol for another (`101` to `h2c`): the
/// new session, and the bytes of each direction that followed the switch
/// in the pieces already fed.
pub struct Upgrade {
    /// The session from now on.
    pub session: Box<dyn Session>,
    /// Bytes after the switch, per direction, with the piece they came in.
    pub leftover: Vec<(Direction, Vec<u8>, Timestamp, u32)>,
}

/// One connection's protocol state.
pub trait Session: std::fmt::Debug + Send {
    /// Takes one in-order piece of `direction`'s stream.
    fn feed(&mut self, direction: Direction, piece: Piece<'_>, scope: &mut Scope<'_>);
    /// The connection closed.
    fn close(&mut self, at: Timestamp, scope: &mut Scope<'_>);
    /// Drops requests still waiting for a response that started before `before`.
    fn expire(&mut self, before: Timestamp, scope: &mut Scope<'_>);
    /// Bytes held.
    fn memory(&self) -> usize;
    /// Which way requests go, once known.
    fn request_direction(&self) -> Option<Direction>;
    /// The bytes turned out not to be this protocol (detection was wrong):
    /// the engine stops feeding the session and counts a false positive.
    fn failed(&self) -> bool {
        false
    }
    /// The connection switched to another protocol this session hands
    /// over to (taken once).
    fn upgrade(&mut self, _settings: &Settings) -> Option<Upgrade> {
        None
    }
}
