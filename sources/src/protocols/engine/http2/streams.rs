//! Streams paired by id: a request's HEADERS open a stream, the response's
//! END_STREAM (a DATA frame or trailers) closes it into one exchange, with
//! body sizes, gRPC message counts and the gRPC status of the trailers
//! (or of a trailers-only response). A block that could not be decoded
//! still opens or answers its stream, with what it said marked unknown:
//! the request is counted, never given another request's path.

use std::collections::BTreeMap;

use sonde_core::event::Timestamp;

use super::super::super::model::Direction;
use super::super::reassembly::Bytes;
use super::super::session::{Detail, Exchange, Scope};
use super::super::settings::Protocol;
use super::super::trace_context::Context;
use super::grpc::Messages;
use super::head::Head;

/// Streams open at once on one connection; beyond it the oldest is
/// dropped and counted (RFC 9113 advises at least 100 as the peers' limit).
const MAX_STREAMS: usize = 256;
/// Bytes counted for an open stream besides its heads.
const STREAM_OVERHEAD: usize = 256;

/// A stream's request and response.
#[derive(Clone, Debug)]
pub struct Http2Exchange {
    /// The stream id.
    pub stream: u32,
    /// The request's header block (fields not decoded are `None`).
    pub request: Head,
    /// The response's header block.
    pub response: Head,
    /// `grpc-status` of the trailers, or of a trailers-only response.
    pub grpc_status: Option<u32>,
    /// DATA content bytes of the request.
    pub request_body_size: u64,
    /// DATA content bytes of the response.
    pub response_body_size: u64,
    /// gRPC messages of the request.
    pub request_messages: Messages,
    /// gRPC messages of the response.
    pub response_messages: Messages,
    /// The RST_STREAM error code that ended it, if one did.
    pub reset: Option<u32>,
    /// The response ended with trailers (a header block after its head).
    pub trailers: bool,
}

impl Http2Exchange {
    /// Whether it is a gRPC call: its content type says so; or, when
    /// neither content type could be decoded (joined mid-connection), a
    /// POST answered with trailers, which HTTP/2 clients other than gRPC
    /// hardly ever get.
    pub fn is_grpc(&self) -> bool {
        let undecoded = self.request.content_type.is_none()
            && self.response.content_type.is_none()
            && self.request.unknown + self.response.unknown > 0;
        self.request.is_grpc()
            || self.response.is_grpc()
            || (undecoded && self.trailers && self.request.method.as_deref() == Some("POST"))
    }
}

#[derive(Debug)]
struct Stream {
    start: Timestamp,
    tid: u32,
    context: Context,
    parent: Option<[u8; 8]>,
    exchange: Http2Exchange,
    answered: bool,
}

impl Stream {
    fn memory(&self) -> usize {
        STREAM_OVERHEAD + self.exchange.request.memory() + self.exchange.response.memory()
    }
}

/// A connection's open streams.
#[derive(Debug, Default)]
pub struct Streams {
    /// Which way requests go, once known.
    pub requests: Option<Direction>,
    open: BTreeMap<u32, Stream>,
}

impl Streams {
    pub fn new(requests: Option<Direction>) -> Self {
        Streams {
            requests,
            open: BTreeMap::new(),
        }
    }

    /// Bytes held.
    pub fn memory(&self) -> usize {
        self.open.values().map(Stream::memory).sum()
    }

    /// The client preface went `direction`.
    pub fn client(&mut self, direction: Direction) {
        self.requests.get_or_insert(direction);
    }

    /// Stream 1 is a request upgraded from HTTP/1.1 (`Upgrade: h2c`).
    pub fn upgraded(&mut self, u: super::Upgraded) {
        let s = stream(1, u.request, u.start, u.tid, u.context, u.parent);
        self.open.insert(1, s);
    }

    fn requests_or(&mut self, direction: Direction, head: &Head) -> Option<Direction> {
        if self.requests.is_none() {
            if head.is_request() {
                self.requests = Some(direction);
            } else if head.status.is_some() {
                self.requests = Some(direction.opposite());
            }
        }
        self.requests
    }

    /// A decoded header block on stream `id`.
    pub fn head(
        &mut self,
        direction: Direction,
        id: u32,
        head: Head,
        end_stream: bool,
        (at, tid): (Timestamp, u32),
        scope: &mut Scope<'_>,
    ) {
        // Even streams are pushed by servers: not requests of the client.
        let Some(requests) = self.requests_or(direction, &head).filter(|_| !id.is_multiple_of(2)) else {
            return;
        };
        if direction == requests {
            if !self.open.contains_key(&id) {
                self.open_stream(direction, id, head, at, tid, scope);
            }
            return;
        }
        let Some(s) = self.open.get_mut(&id) else {
            if head.status.is_some() || head.unknown > 0 {
                scope.counters.orphan_responses += 1;
            }
            return;
        };
        if !s.answered {
            if head.status.is_some_and(|st| (100..200).contains(&st)) && !end_stream {
                // Interim (100 Continue, 103 Early Hints).
                return;
            }
            s.answered = true;
            scope.active.leave(scope.pid, s.tid, s.context.span_id);
            s.exchange.grpc_status = head.grpc_status;
            s.exchange.response = head;
        } else {
            s.exchange.trailers = true;
            if let Some(status) = head.grpc_status {
                s.exchange.grpc_status = Some(status);
            }
        }
        if end_stream {
            self.finish(id, at, scope);
        }
    }

    fn open_stream(
        &mut self,
        direction: Direction,
        id: u32,
        head: Head,
        at: Timestamp,
        tid: u32,
        scope: &mut Scope<'_>,
    ) {
        while self.open.len() >= MAX_STREAMS {
            if let Some((_, oldest)) = self.open.pop_first() {
                scope.counters.unanswered_requests += 1;
                scope.active.leave(scope.pid, oldest.tid, oldest.context.span_id);
            }
        }
        let server = direction == Direction::Ingress;
        let (context, parent) = scope.active.begin(scope.pid, tid, head.traceparent, server);
        self.open.insert(id, stream(id, head, at, tid, context, parent));
    }

    /// A header block on stream `id` could not be decoded (lost bytes, or
    /// the table): the stream is still opened or answered, marked unknown.
    pub fn lost_block(
        &mut self,
        direction: Direction,
        id: u32,
        end_stream: bool,
        at: Timestamp,
        scope: &mut Scope<'_>,
    ) {
        let mut unknown = Head::default();
        unknown.unknown = 1;
        if self.requests.is_none() || id.is_multiple_of(2) {
            return;
        }
        self.head(direction, id, unknown, end_stream, (at, 0), scope);
    }

    /// DATA content on stream `id`.
    pub fn data(&mut self, direction: Direction, id: u32, bytes: Bytes<'_>) {
        let Some(s) = self.open.get_mut(&id) else { return };
        let n = match bytes {
            Bytes::Data(d) => d.len() as u64,
            Bytes::Hole(n) => n,
        };
        let (size, messages) = if Some(direction) == self.requests {
            (&mut s.exchange.request_body_size, &mut s.exchange.request_messages)
        } else {
            (&mut s.exchange.response_body_size, &mut s.exchange.response_messages)
        };
        *size += n;
        // Counted on every stream (a few compares): whether it is gRPC may
        // only be known from its trailers.
        messages.feed(bytes);
    }

    /// END_STREAM on a DATA frame of stream `id`.
    pub fn end_stream(&mut self, direction: Direction, id: u32, (at, _tid): (Timestamp, u32), scope: &mut Scope<'_>) {
        if Some(direction) != self.requests && self.open.get(&id).is_some_and(|s| s.answered) {
            self.finish(id, at, scope);
        }
    }

    /// RST_STREAM: the stream ends; answered, it still makes a span.
    pub fn reset(&mut self, id: u32, code: u32, at: Timestamp, scope: &mut Scope<'_>) {
        if let Some(s) = self.open.get_mut(&id) {
            s.exchange.reset = Some(code);
            self.finish(id, at, scope);
        }
    }

    /// GOAWAY sent `direction`: the sender will not answer (server) or
    /// has not sent (client) streams above `last`.
    pub fn goaway(&mut self, direction: Direction, last: u32, scope: &mut Scope<'_>) {
        if Some(direction) == self.requests {
            return;
        }
        let gone: Vec<u32> = self.open.range(last.saturating_add(1)..).map(|(id, _)| *id).collect();
        for id in gone {
            if let Some(s) = self.open.remove(&id) {
                scope.counters.unanswered_requests += 1;
                scope.active.leave(scope.pid, s.tid, s.context.span_id);
            }
        }
    }

    /// Framing was lost in `direction`: streams stay paired by id (what
    /// was lost shows as unanswered streams when they expire).
    pub fn lost(&mut self, _direction: Direction, _at: Timestamp, _scope: &mut Scope<'_>) {}

    /// Drops streams opened before `before` (all of them with `None`).
    pub fn drop_waiting(&mut self, scope: &mut Scope<'_>, before: Option<Timestamp>) {
        let old: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, s)| before.is_none_or(|b| s.start < b))
            .map(|(id, _)| *id)
            .collect();
        for id in old {
            if let Some(s) = self.open.remove(&id) {
                scope.counters.unanswered_requests += 1;
                scope.active.leave(scope.pid, s.tid, s.context.span_id);
            }
        }
    }

    fn finish(&mut self, id: u32, at: Timestamp, scope: &mut Scope<'_>) {
        let Some(s) = self.open.remove(&id) else { return };
        if !s.answered {
            scope.counters.unanswered_requests += 1;
            scope.active.leave(scope.pid, s.tid, s.context.span_id);
            return;
        }
        let Some(requests) = self.requests else { return };
        scope.out.push(Exchange {
            protocol: Protocol::Http2,
            request_direction: requests,
            start: s.start,
            end: at,
            context: s.context,
            parent: s.parent,
            remote: None,
            detail: Detail::Http2(Box::new(s.exchange)),
        });
    }
}

fn stream(id: u32, request: Head, start: Timestamp, tid: u32, context: Context, parent: Option<[u8; 8]>) -> Stream {
    Stream {
        start,
        tid,
        context,
        parent,
        answered: false,
        exchange: Http2Exchange {
            stream: id,
            request,
            response: Head::default(),
            grpc_status: None,
            request_body_size: 0,
            response_body_size: 0,
            request_messages: Messages::default(),
            response_messages: Messages::default(),
            reset: None,
            trailers: false,
        },
    }
}
