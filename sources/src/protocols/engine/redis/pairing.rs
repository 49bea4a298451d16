//! Commands paired with replies first in, first out: Redis answers every
//! command in order, pipelined or not (`redis-benchmark -P 16` writes 16
//! commands at once). Pushes are skipped; `SELECT` changes the namespace
//! of later commands on the connection.
//!
//! After a loss (a hole outside a value, bytes that are not RESP) every
//! waiting command is dropped and counted: the lost bytes may have held
//! commands or replies, and pairing across them could shift every later
//! reply onto the wrong command. Clients that wait for each reply
//! resynchronise at once; a pipelining client's replies to commands sent
//! before the loss are counted as orphans.

use std::collections::VecDeque;

use sonde_core::event::{SharedStr, Timestamp};

use super::super::super::model::Direction;
use super::super::db::{DbExchange, DbSystem};
use super::super::session::{Detail, Exchange, Scope};
use super::super::settings::Protocol;
use super::super::trace_context::Context;
use super::command::{command, Command};
use super::frame::{Frame, Kind};
use super::reply::{outcome, role, Role};

/// Commands waiting for replies on one connection; beyond it the oldest
/// is dropped and counted.
const MAX_PENDING: usize = 512;
/// Bytes counted for a waiting command besides its strings.
const PENDING_OVERHEAD: usize = 128;

/// A command waiting for its reply.
#[derive(Debug)]
struct Pending {
    command: Command,
    start: Timestamp,
    tid: u32,
    context: Context,
    parent: Option<[u8; 8]>,
}

/// The pairing state of one connection.
#[derive(Debug)]
pub struct Pairing {
    /// Which way commands go, once known.
    pub requests: Option<Direction>,
    /// A command and its reply were paired.
    pub paired: bool,
    queue: VecDeque<Pending>,
    /// The database index (`SELECT`), `0` until one is seen.
    namespace: SharedStr,
    /// A subscribe-family command was sent.
    subscribed: bool,
    memory: usize,
}

impl Pairing {
    /// Nothing seen yet; `requests` is the commands' direction, when known.
    pub fn new(requests: Option<Direction>) -> Self {
        Pairing {
            requests,
            paired: false,
            queue: VecDeque::new(),
            namespace: SharedStr::from_static("0"),
            subscribed: false,
            memory: 0,
        }
    }

    /// Bytes held by waiting commands.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Takes a complete frame of `direction`; false when it cannot be
    /// this protocol's (a command's direction sent something else).
    pub fn frame(&mut self, direction: Direction, frame: Frame, scope: &mut Scope<'_>) -> bool {
        let requests = *self.requests.get_or_insert(if frame.is_command() {
            direction
        } else {
            direction.opposite()
        });
        if direction != requests {
            self.reply(frame, scope);
            return true;
        }
        if !frame.is_command() {
            scope.counters.parse_errors += 1;
            return false;
        }
        self.command(frame, scope);
        true
    }

    fn command(&mut self, frame: Frame, scope: &mut Scope<'_>) {
        while self.queue.len() >= MAX_PENDING {
            self.drop_front(scope);
        }
        let command = command(&frame, scope.settings.queries.redis_keys);
        self.subscribed |= command.subscribe.is_some();
        let server = self.requests == Some(Direction::Ingress);
        let (context, parent) = scope.active.begin(scope.pid, frame.tid, None, server);
        self.memory += PENDING_OVERHEAD + command.memory();
        self.queue.push_back(Pending {
            command,
            start: frame.start,
            tid: frame.tid,
            context,
            parent,
        });
    }

    fn reply(&mut self, frame: Frame, scope: &mut Scope<'_>) {
        match role(&frame, self.subscribed) {
            Role::Push => return,
            Role::Confirmation(kind) => {
                // `SUBSCRIBE a b` is confirmed once per channel: the first
                // confirmation answers it, the others answer nothing.
                if self.queue.front().is_none_or(|p| p.command.subscribe != Some(kind)) {
                    return;
                }
            }
            Role::Reply => {}
        }
        let Some(pending) = self.queue.pop_front() else {
            scope.counters.orphan_responses += 1;
            return;
        };
        self.memory -= PENDING_OVERHEAD + pending.command.memory();
        scope.active.leave(scope.pid, pending.tid, pending.context.span_id);
        self.paired = true;
        let said = outcome(&frame);
        let command = pending.command;
        if let (Some(index), true) = (&command.select, said.ok) {
            self.namespace = index.clone();
        }
        let mut db = DbExchange::new(DbSystem::Redis);
        db.namespace = Some(self.namespace.clone());
        if said.unknown_command {
            db.operation = Some(SharedStr::from_static("_OTHER"));
            db.query = Some("_OTHER".into());
        } else {
            let max = scope.settings.queries.max_length;
            let mut query = command.query;
            db.truncated = command.truncated || query.len() > max;
            if query.len() > max {
                let mut cut = max;
                while !query.is_char_boundary(cut) {
                    cut -= 1;
                }
                query.truncate(cut);
            }
            db.operation = Some(command.operation);
            db.query = Some(query);
        }
        db.status_code = said.error.clone();
        db.error = said.error;
        db.rows = said.rows.filter(|_| frame.kind != Kind::Push);
        scope.out.push(Exchange {
            protocol: Protocol::Redis,
            request_direction: self.requests.unwrap_or(Direction::Egress),
            start: pending.start,
            end: frame.end,
            context: pending.context,
            parent: pending.parent,
            remote: None,
            detail: Detail::Db(Box::new(db)),
        });
    }

    fn drop_front(&mut self, scope: &mut Scope<'_>) {
        if let Some(dropped) = self.queue.pop_front() {
            self.memory -= PENDING_OVERHEAD + dropped.command.memory();
            scope.counters.unanswered_requests += 1;
            scope.active.leave(scope.pid, dropped.tid, dropped.context.span_id);
        }
    }

    /// Drops waiting commands (those sent before `before`, or all), counted.
    pub fn drop_waiting(&mut self, scope: &mut Scope<'_>, before: Option<Timestamp>) {
        while self.queue.front().is_some_and(|p| before.is_none_or(|b| p.start < b)) {
            self.drop_front(scope);
        }
    }

    /// Bytes were lost in either direction: nothing waiting can be paired
    /// safely any more.
    pub fn lost(&mut self, scope: &mut Scope<'_>) {
        self.drop_waiting(scope, None);
    }
}
