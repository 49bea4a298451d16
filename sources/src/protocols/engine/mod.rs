//! The protocol engine: captured bytes in, spans and metrics out. Pure
//! Rust, no BPF: the capture layer feeds it [`ConnInfo`]s and [`Chunk`]s,
//! tests feed it synthetic ones.
//!
//! - [`reassembly`]: each direction put in order by stream position; what
//!   was not captured becomes a hole of known length.
//! - [`infer`] and [`session`]: which protocol a connection speaks, and the
//!   interface each protocol module implements; [`http`] is HTTP/1.x.
//! - [`span`], [`routes`], [`redact`], [`trace_context`]: what a paired
//!   request and response become.
//! - [`red`] and [`counters`]: RED metrics, the service graph, and every
//!   loss counted.
//!
//! Memory is accounted in bytes held (buffered heads, held-back chunks,
//! kept bodies, a fixed cost per connection and per waiting request) and
//! capped per connection and globally; what does not fit is treated as
//! uncaptured and counted. Routes, RED series and active spans have caps of
//! their own.

pub mod connection;
pub mod counters;
pub mod db;
pub mod detect;
pub mod dns;
pub mod http;
pub mod http2;
pub mod infer;
pub mod mysql;
pub mod postgres;
pub mod reassembly;
pub mod red;
pub mod redact;
pub mod redis;
pub mod routes;
pub mod session;
pub mod settings;
pub mod span;
pub mod sql;
pub mod strings;
pub mod trace_context;

#[cfg(test)]
mod tests;

use foldhash::{HashMap, HashMapExt};

use sonde_core::event::{Event, Metric, SharedStr, Timestamp};

use super::model::{Chunk, ConnId, ConnInfo, Role};
use connection::{Connection, CONNECTION_OVERHEAD};
pub use counters::Counters;
use red::Red;
use routes::Routes;
use session::{Exchange, Scope};
pub use settings::{Bodies, Protocol, Queries, Settings};
use trace_context::ActiveSpans;

/// Chunks held back for reordering are released after this long without
/// the chunk they wait for.
const REORDER_WAIT_NS: u64 = 200_000_000;

/// Connections, their parsers, and what they produced so far.
#[derive(Debug)]
pub struct Engine {
    settings: Settings,
    node: SharedStr,
    connections: HashMap<ConnId, Connection>,
    counters: Counters,
    active: ActiveSpans,
    routes: Routes,
    red: Red,
    strings: strings::Strings,
    memory: usize,
    /// Connections found to speak no enabled protocol since the last
    /// [`Engine::take_refused`]: the capture layer stops sending them.
    refused: Vec<ConnId>,
    /// Exchanges completed by the chunk being handled (kept for its room).
    exchanges: Vec<Exchange>,
}

impl Engine {
    /// An engine with these options.
    pub fn new(settings: Settings) -> Self {
        Engine {
            node: settings.node.clone().into(),
            routes: Routes::new(&settings.routes, settings.max_routes_per_service),
            red: Red::new(settings.max_series),
            strings: strings::Strings::default(),
            settings,
            connections: HashMap::new(),
            counters: Counters::default(),
            active: ActiveSpans::default(),
            memory: 0,
            refused: Vec::new(),
            exchanges: Vec::new(),
        }
    }

    /// A connection was opened (connect, accept) or found already open.
    /// Data on a connection never opened is accepted too.
    pub fn open(&mut self, info: ConnInfo) {
        if let Some(known) = self.connections.get_mut(&info.id) {
            known.info = info;
            known.identity = span::Identity::default();
            return;
        }
        if self.memory + CONNECTION_OVERHEAD > self.settings.max_memory_bytes {
            self.counters.memory_drops += 1;
            return;
        }
        let connection = Connection::new(info.clone());
        self.memory += connection.held;
        self.connections.insert(info.id, connection);
    }

    /// Bytes moved on a connection; finished requests become spans in `out`.
    pub fn data(&mut self, chunk: Chunk<'_>, out: &mut Vec<Event>) {
        if !self.connections.contains_key(&chunk.conn) {
            self.open(unknown(chunk.conn));
        }
        let Some(connection) = self.connections.get_mut(&chunk.conn) else {
            return;
        };
        let mut chunk = chunk;
        let held = connection.held;
        // A chunk may be held back and then buffered as a head: twice its size.
        let worst = 2 * chunk.data.len() + 64;
        if self.memory + worst > self.settings.max_memory_bytes {
            self.counters.memory_drops += 1;
            chunk.data = &[];
        }
        let room = (self.settings.max_connection_bytes.saturating_sub(held))
            .min(self.settings.max_memory_bytes.saturating_sub(self.memory + worst));
        // The exchanges' vector is the engine's, reused: most chunks
        // complete none or one.
        let mut exchanges = std::mem::take(&mut self.exchanges);
        let mut scope = Scope {
            settings: &self.settings,
            counters: &mut self.counters,
            active: &mut self.active,
            pid: chunk.conn.pid,
            out: &mut exchanges,
        };
        let was_refused = connection.refused();
        connection.data(&chunk, room, &mut scope);
        if connection.refused() && !was_refused {
            self.refused.push(chunk.conn);
        }
        self.memory = self.memory - held + connection.account();
        self.emit(chunk.conn, &mut exchanges, out);
        self.exchanges = exchanges;
    }

    /// The connection closed at `at`.
    pub fn close(&mut self, id: ConnId, at: Timestamp, out: &mut Vec<Event>) {
        let Some(mut connection) = self.connections.remove(&id) else {
            return;
        };
        let mut exchanges = Vec::new();
        let mut scope = Scope {
            settings: &self.settings,
            counters: &mut self.counters,
            active: &mut self.active,
            pid: id.pid,
            out: &mut exchanges,
        };
        self.memory -= connection.held;
        connection.close(at, &mut scope);
        self.emit_for(&mut connection, &mut exchanges, out);
    }

    /// Forgets connections idle for the idle timeout (closing them), drops
    /// requests unanswered that long, releases chunks held too long.
    pub fn expire(&mut self, now: Timestamp, out: &mut Vec<Event>) {
        let idle = u64::try_from(self.settings.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        let before = Timestamp::from_nanos(now.as_nanos().saturating_sub(idle));
        let reorder = Timestamp::from_nanos(now.as_nanos().saturating_sub(REORDER_WAIT_NS));
        let idle_ids: Vec<ConnId> = self
            .connections
            .iter()
            .filter(|(_, c)| c.last_seen.is_some_and(|t| t < before))
            .map(|(id, _)| *id)
            .collect();
        for id in idle_ids {
            self.counters.expired_connections += 1;
            self.close(id, now, out);
        }
        let ids: Vec<ConnId> = self.connections.keys().copied().collect();
        for id in ids {
            let Some(connection) = self.connections.get_mut(&id) else {
                continue;
            };
            let last_seen = *connection.last_seen.get_or_insert(now);
            let held = connection.held;
            let mut exchanges = Vec::new();
            let mut scope = Scope {
                settings: &self.settings,
                counters: &mut self.counters,
                active: &mut self.active,
                pid: id.pid,
                out: &mut exchanges,
            };
            if last_seen < reorder {
                connection.flush(&mut scope);
            }
            connection.expire(before, &mut scope);
            self.memory = self.memory - held + connection.account();
            self.emit(id, &mut exchanges, out);
        }
    }

    /// RED histograms, the service graph and the engine's own counters,
    /// cumulative, stamped `now`.
    pub fn metrics(&mut self, now: Timestamp) -> Vec<Metric> {
        let mut out = self.red.to_metrics(now);
        out.extend(
            self.counters
                .to_metrics(self.memory, self.connections.len(), &self.node, now),
        );
        out
    }

    /// Connections found to speak no enabled protocol since the last call.
    pub fn take_refused(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.refused)
    }

    /// Bytes held now (what the caps bound).
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// What was lost so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Connections tracked.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }

    fn emit(&mut self, id: ConnId, exchanges: &mut Vec<Exchange>, out: &mut Vec<Event>) {
        if exchanges.is_empty() {
            return;
        }
        // Borrowed, not cloned: the connection's info is read while the
        // routes, metrics and string cache (other fields) change.
        if let Some(connection) = self.connections.get_mut(&id) {
            let mut spans = Spans {
                routes: &mut self.routes,
                red: &mut self.red,
                strings: &mut self.strings,
                counters: &mut self.counters,
                node: &self.node,
            };
            spans.emit(&connection.info, &mut connection.identity, exchanges, out);
        }
        // None left for the next chunk, whether emitted or not.
        exchanges.clear();
    }

    fn emit_for(&mut self, connection: &mut Connection, exchanges: &mut Vec<Exchange>, out: &mut Vec<Event>) {
        let mut spans = Spans {
            routes: &mut self.routes,
            red: &mut self.red,
            strings: &mut self.strings,
            counters: &mut self.counters,
            node: &self.node,
        };
        spans.emit(&connection.info, &mut connection.identity, exchanges, out);
    }
}

/// What turning exchanges into spans and metrics changes.
struct Spans<'a> {
    routes: &'a mut Routes,
    red: &'a mut Red,
    strings: &'a mut strings::Strings,
    counters: &'a mut Counters,
    node: &'a SharedStr,
}

impl Spans<'_> {
    fn emit(
        &mut self,
        info: &ConnInfo,
        identity: &mut span::Identity,
        exchanges: &mut Vec<Exchange>,
        out: &mut Vec<Event>,
    ) {
        for exchange in exchanges.drain(..) {
            let (span, outcome) = span::build(exchange, info, identity, self.routes, self.node, self.strings);
            self.red.record(&outcome, info, self.node, self.strings, self.counters);
            out.push(Event::from(span));
        }
    }
}

/// What is known of a connection first seen through its bytes.
fn unknown(id: ConnId) -> ConnInfo {
    ConnInfo {
        id,
        role: Role::Unknown,
        local: None,
        remote: None,
        comm: String::new(),
        cgroup_id: 0,
        preexisting: true,
        datagram: false,
    }
}
