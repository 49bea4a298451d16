//! The MySQL client/server protocol (MySQL and MariaDB): `packet` cuts
//! each direction into logical packets, `response` follows a command's
//! response, `detect` tells the protocol from the first bytes, and this
//! module pairs commands with their responses.
//!
//! The protocol has one command in flight: a client packet with sequence
//! id 0 starts a command; the server's packets answer it until its
//! response is complete. COM_QUERY and COM_STMT_EXECUTE (the text of the
//! statement its COM_STMT_PREPARE named, at most [`MAX_STATEMENTS`]
//! remembered) become exchanges, as do COM_INIT_DB (`USE`, and the new
//! `db.namespace`) and COM_PING; a prepare is one only when it fails.
//! An ERR's error number is `db.response.status_code` and `error.type`;
//! rows are counted in result sets, affected rows taken from OK.
//!
//! The user name, the authentication data and parameter values are never
//! read. The server greeting's version says MariaDB or MySQL; the
//! handshake response's database (CLIENT_CONNECT_WITH_DB) is the first
//! namespace.

mod command;
mod detect;
mod packet;
mod response;

use std::collections::HashMap;
use std::sync::Arc;

use sonde_core::event::{SharedStr, Timestamp};

pub use detect::looks_like_mysql;

use super::super::model::Direction;
use super::db::{DbExchange, DbSystem};
use super::reassembly::Piece;
use super::session::{Detail, Exchange, Scope, Session};
use super::settings::Protocol;
use super::sql::{self, Described, Dialect};
use super::trace_context::Context;
use packet::{Frame, Framer};
use response::{Answer, Step};

/// Prepared statements remembered per connection; beyond it the map is
/// emptied (their executions lose their text).
pub const MAX_STATEMENTS: usize = 256;
/// Bytes counted per remembered statement.
const OVERHEAD: usize = 128;
/// CLIENT_CONNECT_WITH_DB.
const CONNECT_WITH_DB: u32 = 0x0000_0008;
/// CLIENT_SECURE_CONNECTION.
const SECURE_CONNECTION: u32 = 0x0000_8000;
/// CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.
const LENENC_AUTH: u32 = 0x0020_0000;

/// A command waiting for (the rest of) its response.
#[derive(Debug)]
struct Pending {
    command: u8,
    described: Arc<Described>,
    statement: Option<SharedStr>,
    database: Option<SharedStr>,
    start: Timestamp,
    tid: u32,
    context: Context,
    parent: Option<[u8; 8]>,
    step: Step,
    answer: Answer,
    last: Option<Timestamp>,
}

/// One MySQL connection.
#[derive(Debug)]
pub struct MysqlSession {
    egress: Framer,
    ingress: Framer,
    requests: Option<Direction>,
    system: DbSystem,
    namespace: Option<SharedStr>,
    /// Between the greeting and the end of authentication.
    authenticating: bool,
    statements: HashMap<u32, Arc<Described>>,
    pending: Option<Pending>,
    paired: bool,
    failed: bool,
}

impl MysqlSession {
    /// A session; `requests` is the direction requests go, when known;
    /// `in_sync` when both streams are seen from their first byte.
    pub fn new(requests: Option<Direction>, in_sync: bool) -> Self {
        let mut session = MysqlSession {
            egress: Framer::new(in_sync),
            ingress: Framer::new(in_sync),
            requests: None,
            system: DbSystem::Mysql,
            namespace: None,
            authenticating: false,
            statements: HashMap::new(),
            pending: None,
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
        client.client = Some(true);
        server.client = Some(false);
    }

    fn packet(
        &mut self,
        direction: Direction,
        seq: u8,
        payload: &[u8],
        (length, cut): (u64, bool),
        span: (Timestamp, Timestamp, u32),
        scope: &mut Scope<'_>,
    ) {
        let greeting = seq == 0 && detect::greeting(&header_of(length, seq, payload));
        if self.requests.is_none() {
            match (greeting, seq) {
                (true, _) => self.settle(direction.opposite()),
                (false, 0) => self.settle(direction),
                _ => self.settle(direction.opposite()),
            }
        }
        if Some(direction) == self.requests {
            self.client(seq, payload, cut, span, scope);
        } else if greeting {
            self.greeting(payload);
        } else {
            self.server(payload, length, span.1, scope);
        }
    }

    fn greeting(&mut self, payload: &[u8]) {
        let version = &payload[1..];
        let end = version.iter().position(|b| *b == 0).unwrap_or(version.len());
        if version[..end].windows(7).any(|w| w.eq_ignore_ascii_case(b"mariadb")) {
            self.system = DbSystem::Mariadb;
        }
        self.authenticating = true;
    }

    fn client(
        &mut self,
        seq: u8,
        payload: &[u8],
        cut: bool,
        (start, _, tid): (Timestamp, Timestamp, u32),
        scope: &mut Scope<'_>,
    ) {
        if self.authenticating {
            if seq > 0 && payload.len() > 32 {
                if let Some(database) = handshake_database(payload) {
                    self.namespace = Some(database.into());
                }
            }
            return;
        }
        if seq != 0 {
            return;
        }
        let Some(&command) = payload.first() else { return };
        if !command::known(command) {
            if !self.paired {
                self.failed = true;
            }
            return;
        }
        self.finish_pending(scope);
        let queries = &scope.settings.queries;
        let text = || String::from_utf8_lossy(&payload[1..]).into_owned();
        let mut statement = None;
        let mut database = None;
        let described = match command {
            command::QUERY | command::STMT_PREPARE => Arc::new(sql::describe(&text(), Dialect::Mysql, queries, cut)),
            command::STMT_EXECUTE => {
                let id = payload.get(1..5).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
                statement = id.map(|id| SharedStr::from(id.to_string()));
                id.and_then(|id| self.statements.get(&id).cloned()).unwrap_or_default()
            }
            command::STMT_CLOSE => {
                if let Some(s) = payload.get(1..5) {
                    self.statements.remove(&u32::from_le_bytes([s[0], s[1], s[2], s[3]]));
                }
                Arc::default()
            }
            command::INIT_DB => {
                let name = text();
                database = (!name.is_empty() && name.len() <= 64 && !cut).then(|| SharedStr::from(name));
                Arc::new(Described {
                    operation: Some("USE"),
                    summary: Some("USE".into()),
                    ..Described::default()
                })
            }
            command::PING => Arc::new(Described {
                operation: Some("PING"),
                ..Described::default()
            }),
            _ => Arc::default(),
        };
        if !command::answered(command) {
            return;
        }
        let server = self.requests == Some(Direction::Ingress);
        let (context, parent) = scope.active.begin(scope.pid, tid, None, server);
        self.pending = Some(Pending {
            command,
            described,
            statement,
            database,
            start,
            tid,
            context,
            parent,
            step: Step::First,
            answer: Answer::default(),
            last: None,
        });
    }

    fn server(&mut self, payload: &[u8], length: u64, end: Timestamp, scope: &mut Scope<'_>) {
        if self.authenticating {
            if matches!(payload.first(), Some(0x00 | 0xff)) {
                self.authenticating = false;
            }
            return;
        }
        let Some(pending) = &mut self.pending else {
            return;
        };
        pending.step = response::step(pending.step, pending.command, payload, length, &mut pending.answer);
        pending.last = Some(end);
        if pending.step == Step::Done {
            self.finish_pending(scope);
        }
    }

    /// Ends the pending command: an exchange when its response began.
    fn finish_pending(&mut self, scope: &mut Scope<'_>) {
        let Some(p) = self.pending.take() else { return };
        scope.active.leave(scope.pid, p.tid, p.context.span_id);
        let Some(end) = p.last else {
            scope.counters.unanswered_requests += 1;
            return;
        };
        self.paired = true;
        let error = p.answer.error.map(|code| SharedStr::from(code.to_string()));
        if p.command == command::STMT_PREPARE {
            if let Some(id) = p.answer.statement {
                if self.statements.len() >= MAX_STATEMENTS {
                    self.statements.clear();
                }
                self.statements.insert(id, p.described.clone());
            }
            if error.is_none() {
                return;
            }
        }
        if p.command == command::INIT_DB && error.is_none() && p.database.is_some() {
            self.namespace = p.database.clone();
        }
        let spans = [
            command::QUERY,
            command::STMT_EXECUTE,
            command::STMT_PREPARE,
            command::INIT_DB,
            command::PING,
        ];
        if !spans.contains(&p.command) {
            return;
        }
        let d = &*p.described;
        let db = DbExchange {
            namespace: self.namespace.clone(),
            operation: d.operation.map(SharedStr::from_static),
            query: d.query.clone(),
            summary: d.summary.clone(),
            truncated: d.truncated,
            status_code: error.clone(),
            error,
            rows: p.answer.rows,
            statement: p.statement,
            ..DbExchange::new(self.system)
        };
        scope.out.push(Exchange {
            protocol: Protocol::Mysql,
            request_direction: self.requests.unwrap_or(Direction::Egress),
            start: p.start,
            end,
            context: p.context,
            parent: p.parent,
            remote: None,
            detail: Detail::Db(Box::new(db)),
        });
    }

    fn lost(&mut self, scope: &mut Scope<'_>) {
        scope.counters.gaps += 1;
        if let Some(p) = self.pending.take() {
            scope.counters.unanswered_requests += 1;
            scope.active.leave(scope.pid, p.tid, p.context.span_id);
        }
        self.authenticating = false;
    }
}

/// A packet's header and payload again, for the greeting check.
fn header_of(length: u64, seq: u8, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(length.min(0xff_ffff)).unwrap_or(0).to_le_bytes();
    let mut out = vec![length[0], length[1], length[2], seq];
    out.extend_from_slice(&payload[..payload.len().min(96)]);
    out
}

/// The database a HandshakeResponse41 names (CLIENT_CONNECT_WITH_DB); the
/// user name and the authentication data before it are skipped, unread.
fn handshake_database(payload: &[u8]) -> Option<String> {
    let flags = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    if flags & CONNECT_WITH_DB == 0 {
        return None;
    }
    let rest = payload.get(32..)?;
    let user_end = rest.iter().position(|b| *b == 0)?;
    let rest = &rest[user_end + 1..];
    let rest = if flags & LENENC_AUTH != 0 {
        let (n, size) = response::lenenc(rest)?;
        rest.get(size + usize::try_from(n).ok()?..)?
    } else if flags & SECURE_CONNECTION != 0 {
        let n = usize::from(*rest.first()?);
        rest.get(1 + n..)?
    } else {
        rest.get(rest.iter().position(|b| *b == 0)? + 1..)?
    };
    let end = rest.iter().position(|b| *b == 0)?;
    let name = &rest[..end];
    (!name.is_empty() && name.len() <= 64).then(|| String::from_utf8_lossy(name).into_owned())
}

impl Session for MysqlSession {
    fn feed(&mut self, direction: Direction, piece: Piece<'_>, scope: &mut Scope<'_>) {
        if self.failed {
            return;
        }
        let keep = (scope.settings.queries.max_length * 4 + 64).min(scope.settings.max_connection_bytes / 4);
        let mut frames = Vec::new();
        let framer = match direction {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        };
        framer.feed(piece, keep, &mut |frame| match frame {
            Frame::Packet {
                seq,
                payload,
                length,
                cut,
                start,
                end,
                tid,
            } => {
                frames.push(Some((seq, payload.to_vec(), length, cut, (start, end, tid))));
            }
            Frame::Lost => frames.push(None),
        });
        for frame in frames {
            match frame {
                Some((seq, payload, length, cut, span)) => {
                    self.packet(direction, seq, &payload, (length, cut), span, scope)
                }
                None => self.lost(scope),
            }
            if self.failed {
                return;
            }
        }
    }

    fn close(&mut self, _at: Timestamp, scope: &mut Scope<'_>) {
        if let Some(p) = self.pending.take() {
            scope.counters.unanswered_requests += 1;
            scope.active.leave(scope.pid, p.tid, p.context.span_id);
        }
    }

    fn expire(&mut self, before: Timestamp, scope: &mut Scope<'_>) {
        if self.pending.as_ref().is_some_and(|p| p.start < before) {
            self.close(before, scope);
        }
    }

    fn memory(&self) -> usize {
        self.egress.memory()
            + self.ingress.memory()
            + self.statements.values().map(|d| OVERHEAD + d.memory()).sum::<usize>()
            + self.pending.as_ref().map_or(0, |p| OVERHEAD + p.described.memory())
    }

    fn request_direction(&self) -> Option<Direction> {
        self.requests
    }

    fn failed(&self) -> bool {
        self.failed
    }
}
