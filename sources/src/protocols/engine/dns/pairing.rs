//! Queries paired with responses by transaction id, question and peer,
//! per socket: a server socket answers many clients (each datagram's
//! `peer` tells which), a resolver sends A and AAAA at once and reads the
//! answers in any order. A peer is compared only when both messages name
//! one (a connected socket's sends name none, its receives may).
//! A retransmitted query (same id, question and peer, still waiting) is
//! counted as a duplicate and the first one's span waits on.

use std::collections::HashMap;
use std::net::SocketAddr;

use sonde_core::event::Timestamp;

use super::super::super::model::Direction;
use super::super::session::{Detail, Exchange, Scope};
use super::super::settings::Protocol;
use super::super::trace_context::Context;
use super::message::{Header, Question};
use super::{names, DnsExchange};

/// Queries waiting on one socket; beyond it new ones are counted, not kept.
const MAX_PENDING: usize = 1024;
/// Bytes counted for a waiting query besides its name.
const PENDING_OVERHEAD: usize = 128;

/// A query waiting for its response.
#[derive(Debug)]
struct Pending {
    name: String,
    peer: Option<SocketAddr>,
    direction: Direction,
    start: Timestamp,
    tid: u32,
    context: Context,
    parent: Option<[u8; 8]>,
}

/// One message, parsed as far as the session needs.
#[derive(Debug)]
pub struct Message<'a> {
    /// Its header.
    pub header: Header,
    /// Its question.
    pub question: Question,
    /// The whole message's bytes, when all were captured (for answers).
    pub whole: Option<&'a [u8]>,
    /// Which way it went.
    pub direction: Direction,
    /// The datagram's other end, when the call named it.
    pub peer: Option<SocketAddr>,
    /// When it came.
    pub at: Timestamp,
    /// Which thread moved it.
    pub tid: u32,
    /// Over TCP.
    pub tcp: bool,
}

/// Waiting queries by (id, type).
#[derive(Debug, Default)]
pub struct Pairing {
    waiting: HashMap<(u16, u16), Vec<Pending>>,
    count: usize,
    memory: usize,
}

fn same_peer(a: Option<SocketAddr>, b: Option<SocketAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

impl Pairing {
    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// A query: waits for its response.
    pub fn query(&mut self, m: Message<'_>, scope: &mut Scope<'_>) {
        let key = (m.header.id, m.question.qtype);
        let entry = self.waiting.entry(key).or_default();
        let retransmitted = entry
            .iter()
            .any(|p| p.name == m.question.name && same_peer(p.peer, m.peer) && p.direction == m.direction);
        if retransmitted {
            scope.counters.duplicates += 1;
            return;
        }
        if self.count >= MAX_PENDING {
            scope.counters.unanswered_requests += 1;
            if entry.is_empty() {
                self.waiting.remove(&key);
            }
            return;
        }
        let server = m.direction == Direction::Ingress;
        let (context, parent) = scope.active.begin(scope.pid, m.tid, None, server);
        self.count += 1;
        self.memory += PENDING_OVERHEAD + m.question.name.len();
        entry.push(Pending {
            name: m.question.name,
            peer: m.peer,
            direction: m.direction,
            start: m.at,
            tid: m.tid,
            context,
            parent,
        });
    }

    /// A response: pairs with its query, if one waits. Returns whether it did.
    pub fn response(&mut self, m: Message<'_>, scope: &mut Scope<'_>) -> bool {
        let key = (m.header.id, m.question.qtype);
        let Some(entry) = self.waiting.get_mut(&key) else {
            scope.counters.orphan_responses += 1;
            return false;
        };
        let found = entry.iter().position(|p| {
            p.name == m.question.name && same_peer(p.peer, m.peer) && p.direction == m.direction.opposite()
        });
        let Some(index) = found else {
            scope.counters.orphan_responses += 1;
            return false;
        };
        let pending = entry.swap_remove(index);
        if entry.is_empty() {
            self.waiting.remove(&key);
        }
        self.count -= 1;
        self.memory -= PENDING_OVERHEAD + pending.name.len();
        scope.active.leave(scope.pid, pending.tid, pending.context.span_id);
        let addresses = m
            .whole
            .map(|bytes| super::answers::addresses(bytes, &m.header))
            .unwrap_or_default();
        let dns = DnsExchange {
            name: pending.name.into(),
            qtype: names::qtype(m.question.qtype),
            rcode: names::rcode(m.header.rcode),
            answers: m.header.answers,
            addresses,
            tcp: m.tcp,
            truncated: m.header.truncated,
        };
        scope.out.push(Exchange {
            protocol: Protocol::Dns,
            request_direction: pending.direction,
            start: pending.start,
            end: m.at,
            context: pending.context,
            parent: pending.parent,
            remote: pending.peer.or(m.peer),
            detail: Detail::Dns(Box::new(dns)),
        });
        true
    }

    /// Drops queries sent before `before` (all when `None`), counted.
    pub fn drop_waiting(&mut self, scope: &mut Scope<'_>, before: Option<Timestamp>) {
        let (mut dropped, mut freed) = (0, 0);
        self.waiting.retain(|_, entry| {
            entry.retain(|p| {
                let keep = before.is_some_and(|b| p.start >= b);
                if !keep {
                    dropped += 1;
                    freed += PENDING_OVERHEAD + p.name.len();
                    scope.active.leave(scope.pid, p.tid, p.context.span_id);
                }
                keep
            });
            !entry.is_empty()
        });
        self.count -= dropped;
        self.memory -= freed;
        scope.counters.unanswered_requests += dropped as u64;
    }
}
