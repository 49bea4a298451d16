//! PostgreSQL's frontend/backend protocol 3.0: `frame` cuts each
//! direction into messages, `messages` reads their fields, `detect` tells
//! the protocol from a connection's first bytes, and this module pairs
//! statements with their outcomes.
//!
//! Pairing is first in, first out. Each simple Query gives one exchange
//! per statement of its text; each Execute of the extended protocol one
//! exchange, its text the Parse of the portal's statement (named
//! statements remembered per connection, at most [`MAX_STATEMENTS`]). A
//! Sync or a Query ends a batch, and the server's ReadyForQuery ends its
//! answer: what the batch still waits for then was skipped (an earlier
//! error) or lost. CommandComplete, EmptyQueryResponse, PortalSuspended
//! and ErrorResponse complete the oldest waiting statement; COPY is one
//! exchange (operation COPY), its data counted past, never read.
//!
//! `db.response.status_code` is the SQLSTATE: `00000` on success (the
//! server's code for it), the ErrorResponse's `C` field on failure, also
//! its `error.type`. Passwords (`p` messages), parameter values (Bind) and
//! rows are never read.
//!
//! After a gap that loses the framing, or a response with nothing to
//! answer, completions are ignored up to the next ReadyForQuery, and the
//! batches sent before it are dropped: a statement is lost rather than
//! paired with another's outcome.

mod detect;
mod frame;
mod messages;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use sonde_core::event::{SharedStr, Timestamp};

pub use detect::looks_like_postgres;

use super::super::model::Direction;
use super::db::{DbExchange, DbSystem};
use super::reassembly::Piece;
use super::session::{Detail, Exchange, Scope, Session};
use super::settings::Protocol;
use super::sql::{self, Described, Dialect};
use super::trace_context::Context;
use frame::{Frame, Framer, BACKEND, FRONTEND, GSSENC_REQUEST, SSL_REQUEST};
use messages::{command_tag, cstr, sqlstate, startup_database};

/// Named prepared statements (and portals) remembered per connection;
/// beyond it the map is emptied (their executions lose their text).
pub const MAX_STATEMENTS: usize = 256;
/// Statements waiting for their outcome; beyond it the oldest is dropped.
const MAX_WAITING: usize = 256;
/// Bytes counted per waiting statement or remembered one.
const OVERHEAD: usize = 128;

/// A statement sent and not yet answered.
#[derive(Debug)]
struct Waiting {
    described: Arc<Described>,
    statement: Option<SharedStr>,
    start: Timestamp,
    tid: u32,
    context: Context,
    parent: Option<[u8; 8]>,
    copy: bool,
}

/// An entry of the queue: a statement, or the end of a batch.
#[derive(Debug)]
enum Item {
    Statement(Waiting),
    /// A Sync or the end of a Query, sent at `at`; `parsed` is the last
    /// statement the batch parsed (for an error that no Execute awaits).
    Sync {
        at: Timestamp,
        parsed: Option<(Arc<Described>, Option<SharedStr>, Timestamp, u32)>,
    },
}

/// One PostgreSQL connection.
#[derive(Debug)]
pub struct PostgresSession {
    egress: Framer,
    ingress: Framer,
    requests: Option<Direction>,
    namespace: Option<SharedStr>,
    statements: HashMap<Vec<u8>, Arc<Described>>,
    portals: HashMap<Vec<u8>, (Arc<Described>, Option<SharedStr>)>,
    queue: VecDeque<Item>,
    /// The first byte of the batch being sent, and the last Parse in it.
    batch_start: Option<(Timestamp, u32)>,
    parsed: Option<(Arc<Described>, Option<SharedStr>, Timestamp, u32)>,
    /// Completions mean nothing until the next ReadyForQuery.
    await_ready: bool,
    /// The server skips Executes until the batch's Sync (after an error).
    skipping: bool,
    paired: bool,
    failed: bool,
}

impl PostgresSession {
    /// A session; `requests` is the direction requests go, when known;
    /// `in_sync` when both streams are seen from their first byte.
    pub fn new(requests: Option<Direction>, in_sync: bool) -> Self {
        let mut session = PostgresSession {
            egress: Framer::new(in_sync),
            ingress: Framer::new(in_sync),
            requests: None,
            namespace: None,
            statements: HashMap::new(),
            portals: HashMap::new(),
            queue: VecDeque::new(),
            batch_start: None,
            parsed: None,
            await_ready: false,
            skipping: false,
            paired: false,
            failed: false,
        };
        if let Some(requests) = requests {
            session.settle(requests);
        }
        session
    }

    fn settle(&mut self, requests: Direction) {
        self.requests = Some(requests);
        let (client, server) = requests.split(&mut self.egress, &mut self.ingress);
        client.types = Some(FRONTEND);
        server.types = Some(BACKEND);
        server.startup = false;
    }

    fn framer(&mut self, direction: Direction) -> &mut Framer {
        match direction {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        }
    }

    /// A message from `direction`; decides which way requests go when the
    /// message says (a type only one side sends).
    fn message(
        &mut self,
        direction: Direction,
        tag: u8,
        body: &[u8],
        cut: bool,
        span: (Timestamp, Timestamp, u32),
        scope: &mut Scope<'_>,
    ) {
        if self.requests.is_none() {
            let client_only = tag == 0 || b"BfFPpQX".contains(&tag);
            let server_only = b"123AGIKnNRsTtVvWZ".contains(&tag);
            match (client_only, server_only) {
                (true, _) => self.settle(direction),
                (_, true) => self.settle(direction.opposite()),
                _ => return,
            }
        }
        if Some(direction) == self.requests {
            self.frontend(tag, body, cut, span, scope);
        } else {
            self.backend(tag, body, span.1, scope);
        }
    }

    fn frontend(
        &mut self,
        tag: u8,
        body: &[u8],
        cut: bool,
        (start, _, tid): (Timestamp, Timestamp, u32),
        scope: &mut Scope<'_>,
    ) {
        let queries = &scope.settings.queries;
        if tag != 0 && tag != b'S' && self.batch_start.is_none() {
            self.batch_start = Some((start, tid));
        }
        match tag {
            0 => {
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                if matches!(code, SSL_REQUEST | GSSENC_REQUEST) {
                    let server = self.requests.map(Direction::opposite);
                    if let Some(server) = server {
                        self.framer(server).encryption_reply = true;
                    }
                } else if let Some(database) = startup_database(&body[4..]) {
                    self.namespace = Some(database.into());
                }
                self.batch_start = None;
            }
            b'Q' => {
                let (text, _) = cstr(body);
                let text = String::from_utf8_lossy(text);
                let mut statements = sql::split(&text, Dialect::Postgres);
                if statements.is_empty() {
                    statements.push(String::new());
                }
                for statement in statements {
                    let described = Arc::new(sql::describe(&statement, Dialect::Postgres, queries, cut));
                    self.push(described, None, start, tid, scope);
                }
                self.sync(start);
            }
            b'P' => {
                let (name, rest) = cstr(body);
                let (text, _) = cstr(rest);
                let described = Arc::new(sql::describe(
                    &String::from_utf8_lossy(text),
                    Dialect::Postgres,
                    queries,
                    cut,
                ));
                if self.statements.len() >= MAX_STATEMENTS {
                    self.statements.clear();
                }
                self.statements.insert(name.to_vec(), described.clone());
                let (batch, batch_tid) = self.batch_start.unwrap_or((start, tid));
                self.parsed = Some((described, statement_name(name), batch, batch_tid));
            }
            b'B' => {
                let (portal, rest) = cstr(body);
                let (name, _) = cstr(rest);
                let described = self.statements.get(name).cloned().unwrap_or_default();
                if self.portals.len() >= MAX_STATEMENTS {
                    self.portals.clear();
                }
                self.portals.insert(portal.to_vec(), (described, statement_name(name)));
            }
            b'E' => {
                let (portal, _) = cstr(body);
                let (described, name) = self.portals.get(portal).cloned().unwrap_or_default();
                let (batch, batch_tid) = self.batch_start.unwrap_or((start, tid));
                self.push(described, name, batch, batch_tid, scope);
            }
            b'S' => self.sync(start),
            b'C' => {
                let (name, _) = cstr(body.get(1..).unwrap_or_default());
                match body.first() {
                    Some(b'S') => drop(self.statements.remove(name)),
                    Some(b'P') => drop(self.portals.remove(name)),
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn push(
        &mut self,
        described: Arc<Described>,
        statement: Option<SharedStr>,
        start: Timestamp,
        tid: u32,
        scope: &mut Scope<'_>,
    ) {
        let waiting = self.queue.iter().filter(|i| matches!(i, Item::Statement(_))).count();
        if waiting >= MAX_WAITING {
            if let Some(at) = self.queue.iter().position(|i| matches!(i, Item::Statement(_))) {
                if let Some(Item::Statement(w)) = self.queue.remove(at) {
                    scope.counters.unanswered_requests += 1;
                    scope.active.leave(scope.pid, w.tid, w.context.span_id);
                }
            }
        }
        let server = self.requests == Some(Direction::Ingress);
        let (context, parent) = scope.active.begin(scope.pid, tid, None, server);
        self.queue.push_back(Item::Statement(Waiting {
            described,
            statement,
            start,
            tid,
            context,
            parent,
            copy: false,
        }));
    }

    fn sync(&mut self, at: Timestamp) {
        let parsed = self.parsed.take();
        self.queue.push_back(Item::Sync { at, parsed });
        self.batch_start = None;
    }

    fn backend(&mut self, tag: u8, body: &[u8], end: Timestamp, scope: &mut Scope<'_>) {
        if self.await_ready && tag != b'Z' {
            return;
        }
        match tag {
            b'C' | b'I' | b's' => {
                if self.skipping {
                    return;
                }
                let (operation, rows) = if tag == b'C' { command_tag(body) } else { (None, None) };
                let Some(Item::Statement(w)) = self.front_statement(scope) else {
                    return;
                };
                let outcome = Outcome {
                    operation,
                    rows,
                    status: "00000".to_owned(),
                    error: false,
                };
                self.complete(w, outcome, end, scope);
            }
            b'E' => {
                let status = sqlstate(body).unwrap_or_else(|| "XX000".to_owned());
                let outcome = Outcome {
                    operation: None,
                    rows: None,
                    status,
                    error: true,
                };
                match self.queue.front() {
                    Some(Item::Statement(_)) => {
                        if let Some(Item::Statement(w)) = self.queue.pop_front() {
                            self.complete(w, outcome, end, scope);
                        }
                    }
                    Some(Item::Sync { parsed: Some(_), .. }) => {
                        // A Parse failed with no Execute waiting: its statement.
                        if let Some(Item::Sync {
                            parsed: Some((described, statement, start, tid)),
                            at,
                        }) = self.queue.pop_front()
                        {
                            let server = self.requests == Some(Direction::Ingress);
                            let (context, parent) = scope.active.begin(scope.pid, tid, None, server);
                            let w = Waiting {
                                described,
                                statement,
                                start,
                                tid,
                                context,
                                parent,
                                copy: false,
                            };
                            self.complete(w, outcome, end, scope);
                            self.queue.push_front(Item::Sync { at, parsed: None });
                        }
                    }
                    _ => {}
                }
                self.skipping = true;
            }
            b'G' | b'H' => {
                if let Some(Item::Statement(w)) = self.queue.front_mut() {
                    w.copy = true;
                }
            }
            b'Z' => self.ready(end, scope),
            _ => {}
        }
    }

    /// The oldest statement waiting in the batch being answered.
    fn front_statement(&mut self, scope: &mut Scope<'_>) -> Option<Item> {
        match self.queue.front() {
            Some(Item::Statement(_)) => self.queue.pop_front(),
            _ => {
                // An answer with no statement waiting: the pairing is lost.
                scope.counters.orphan_responses += 1;
                self.await_ready = true;
                None
            }
        }
    }

    /// ReadyForQuery: the oldest batch is answered.
    fn ready(&mut self, at: Timestamp, scope: &mut Scope<'_>) {
        self.skipping = false;
        let resync = std::mem::take(&mut self.await_ready);
        // After a loss, every batch sent before now may be what this answers.
        let last = if resync {
            self.queue
                .iter()
                .rposition(|i| matches!(i, Item::Sync { at: sent, .. } if *sent <= at))
        } else {
            self.queue.iter().position(|i| matches!(i, Item::Sync { .. }))
        };
        let Some(last) = last else { return };
        for item in self.queue.drain(..=last) {
            if let Item::Statement(w) = item {
                if !resync {
                    // Not skipped by an error: never answered.
                    scope.counters.unanswered_requests += 1;
                }
                scope.active.leave(scope.pid, w.tid, w.context.span_id);
            }
        }
    }

    fn complete(&mut self, w: Waiting, outcome: Outcome, end: Timestamp, scope: &mut Scope<'_>) {
        self.paired = true;
        scope.active.leave(scope.pid, w.tid, w.context.span_id);
        let described = &*w.described;
        let operation = if w.copy {
            Some("COPY")
        } else {
            outcome.operation.or(described.operation)
        };
        let status: SharedStr = outcome.status.into();
        let db = DbExchange {
            namespace: self.namespace.clone(),
            operation: operation.map(SharedStr::from_static),
            query: described.query.clone(),
            summary: described.summary.clone(),
            truncated: described.truncated,
            error: outcome.error.then(|| status.clone()),
            status_code: Some(status),
            rows: outcome.rows,
            statement: w.statement,
            ..DbExchange::new(DbSystem::Postgresql)
        };
        scope.out.push(Exchange {
            protocol: Protocol::Postgres,
            request_direction: self.requests.unwrap_or(Direction::Egress),
            start: w.start,
            end,
            context: w.context,
            parent: w.parent,
            remote: None,
            detail: Detail::Db(Box::new(db)),
        });
    }

    /// The framing was lost: whatever was waiting may never be answered,
    /// and what comes next may answer something lost.
    fn lost(&mut self, scope: &mut Scope<'_>) {
        scope.counters.gaps += 1;
        for item in self.queue.drain(..) {
            if let Item::Statement(w) = item {
                scope.counters.unanswered_requests += 1;
                scope.active.leave(scope.pid, w.tid, w.context.span_id);
            }
        }
        self.batch_start = None;
        self.parsed = None;
        self.skipping = false;
        self.await_ready = true;
    }
}

/// What answered a statement.
struct Outcome {
    operation: Option<&'static str>,
    rows: Option<u64>,
    status: String,
    error: bool,
}

fn statement_name(name: &[u8]) -> Option<SharedStr> {
    (!name.is_empty() && name.len() <= 64).then(|| String::from_utf8_lossy(name).into_owned().into())
}

impl Session for PostgresSession {
    fn feed(&mut self, direction: Direction, piece: Piece<'_>, scope: &mut Scope<'_>) {
        if self.failed {
            return;
        }
        let sql_bytes = (scope.settings.queries.max_length * 4 + 64).min(scope.settings.max_connection_bytes / 4);
        let mut frames = Vec::new();
        let mut framer = std::mem::replace(self.framer(direction), Framer::new(false));
        framer.feed(piece, sql_bytes, &mut |frame| {
            frames.push(match frame {
                Frame::Message {
                    tag,
                    body,
                    cut,
                    start,
                    end,
                    tid,
                } => Owned::Message(tag, body.to_vec(), cut, (start, end, tid)),
                Frame::EncryptionReply => Owned::Reply,
                Frame::Lost => Owned::Lost,
                Frame::Invalid => Owned::Invalid,
            });
        });
        *self.framer(direction) = framer;
        for frame in frames {
            match frame {
                Owned::Message(tag, body, cut, span) => self.message(direction, tag, &body, cut, span, scope),
                Owned::Reply => {}
                Owned::Lost => self.lost(scope),
                Owned::Invalid => {
                    if !self.paired {
                        self.failed = true;
                        return;
                    }
                    scope.counters.parse_errors += 1;
                    self.lost(scope);
                }
            }
        }
    }

    fn close(&mut self, _at: Timestamp, scope: &mut Scope<'_>) {
        for item in self.queue.drain(..) {
            if let Item::Statement(w) = item {
                scope.counters.unanswered_requests += 1;
                scope.active.leave(scope.pid, w.tid, w.context.span_id);
            }
        }
    }

    fn expire(&mut self, before: Timestamp, scope: &mut Scope<'_>) {
        let stale = |i: &Item| match i {
            Item::Statement(w) => w.start < before,
            Item::Sync { at, .. } => *at < before,
        };
        while self.queue.front().is_some_and(stale) {
            if let Some(Item::Statement(w)) = self.queue.pop_front() {
                scope.counters.unanswered_requests += 1;
                scope.active.leave(scope.pid, w.tid, w.context.span_id);
            }
        }
    }

    fn memory(&self) -> usize {
        let described = |d: &Described| OVERHEAD + d.memory();
        self.egress.memory()
            + self.ingress.memory()
            + self.statements.values().map(|d| described(d)).sum::<usize>()
            + self.portals.values().map(|(d, _)| described(d)).sum::<usize>()
            + self.queue.len() * OVERHEAD
    }

    fn request_direction(&self) -> Option<Direction> {
        self.requests
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

/// A frame copied out of the framer, so the session can be borrowed whole.
enum Owned {
    Message(u8, Vec<u8>, bool, (Timestamp, Timestamp, u32)),
    Reply,
    Lost,
    Invalid,
}
