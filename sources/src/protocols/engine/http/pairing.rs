//! Requests and responses paired first in, first out (keep-alive and
//! pipelining answer in order), with interim `1xx` responses skipped,
//! bodies framed by the request (`HEAD`) and status (`204`, `304`), and
//! the trace context each request's span gets.

use std::collections::VecDeque;

use sonde_core::event::Timestamp;

use super::super::super::model::Direction;
use super::super::counters::Counters;
use super::super::session::{Detail, Exchange, Scope};
use super::super::settings::Protocol;
use super::handler::{Framing, Handler};
use super::head::{BodyLength, Head, Request, Response};
use super::pending::Pending;
use super::HttpExchange;

/// Requests waiting for responses on one connection; beyond it (or beyond
/// the connection's buffer cap) the oldest is dropped and counted.
const MAX_PENDING: usize = 64;

/// The pairing state of one connection.
#[derive(Debug, Default)]
pub struct Pairing {
    /// Which way requests go, once known.
    pub requests: Option<Direction>,
    queue: VecDeque<Pending>,
    /// The response being read answers no request (or is interim).
    skip_response: bool,
    /// A `101` or an accepted `CONNECT`: the connection leaves HTTP.
    pub upgraded: bool,
    /// The request a `101` to `h2c` answered: HTTP/2's stream 1 now.
    pub h2c: Option<Pending>,
}

impl Pairing {
    /// No request seen yet; `requests` is their direction, when known.
    pub fn new(requests: Option<Direction>) -> Self {
        Pairing {
            requests,
            ..Pairing::default()
        }
    }

    /// Bytes held by waiting requests: their kept strings and bodies.
    pub fn memory(&self) -> usize {
        self.queue.iter().map(Pending::memory).sum()
    }

    /// Drops every waiting request, counted as unanswered.
    pub fn drop_waiting(&mut self, scope: &mut Scope<'_>, before: Option<Timestamp>) {
        while self.queue.front().is_some_and(|p| before.is_none_or(|b| p.start < b)) {
            let dropped = self.queue.pop_front();
            scope.counters.unanswered_requests += 1;
            if let Some(p) = dropped {
                scope.active.leave(scope.pid, p.tid, p.context.span_id);
            }
        }
    }

    /// The handler for one direction's parser.
    pub fn side<'p, 's, 'a>(&'p mut self, direction: Direction, scope: &'s mut Scope<'a>) -> Side<'p, 's, 'a> {
        Side {
            pairing: self,
            direction,
            scope,
        }
    }
}

/// The pairing seen from one direction.
pub struct Side<'p, 's, 'a> {
    pairing: &'p mut Pairing,
    direction: Direction,
    scope: &'s mut Scope<'a>,
}

impl Side<'_, '_, '_> {
    fn request(&mut self, request: Request, start: Timestamp, tid: u32) -> Framing {
        let (scope, pairing) = (&mut *self.scope, &mut *self.pairing);
        while pairing.queue.len() >= MAX_PENDING || pairing.memory() > scope.settings.max_connection_bytes / 2 {
            if let Some(oldest) = pairing.queue.pop_front() {
                scope.counters.unanswered_requests += 1;
                scope.active.leave(scope.pid, oldest.tid, oldest.context.span_id);
            }
        }
        let server = self.direction == Direction::Ingress;
        let (context, parent) = scope.active.begin(scope.pid, tid, request.traceparent, server);
        let framing = Framing {
            body: request.body,
            keep: scope
                .settings
                .body_bytes_within(pairing.memory(), request.content_type.as_deref()),
            stop: request.method == "CONNECT",
        };
        pairing.queue.push_back(Pending {
            request,
            start,
            tid,
            context,
            parent,
            request_done: false,
            request_body_size: 0,
            request_body: None,
            response: None,
        });
        framing
    }

    fn response(&mut self, response: Response) -> Framing {
        let (scope, pairing) = (&mut *self.scope, &mut *self.pairing);
        let kept = pairing.memory();
        let waiting = pairing.queue.iter_mut().find(|p| p.response.is_none());
        let Some(pending) = waiting else {
            scope.counters.orphan_responses += 1;
            pairing.skip_response = true;
            return Framing {
                body: response.body,
                keep: 0,
                stop: response.status == 101,
            };
        };
        let status = response.status;
        let interim = (100..200).contains(&status) && status != 101;
        let connect = pending.request.method == "CONNECT" && (200..300).contains(&status);
        let body = if pending.request.method == "HEAD" || status < 200 || status == 204 || status == 304 || connect {
            BodyLength::None
        } else {
            response.body
        };
        let stop = status == 101 || connect;
        pairing.upgraded |= stop;
        pairing.skip_response = interim;
        let keep = scope.settings.body_bytes_within(kept, response.content_type.as_deref());
        if !interim {
            scope.active.leave(scope.pid, pending.tid, pending.context.span_id);
            pending.response = Some(response);
        }
        Framing { body, keep, stop }
    }
}

impl Handler for Side<'_, '_, '_> {
    fn head(&mut self, head: Head, start: Timestamp, tid: u32) -> Framing {
        let requests = match (&head, self.pairing.requests) {
            (_, Some(known)) => known,
            (Head::Request(_), None) => self.direction,
            (Head::Response(_), None) => self.direction.opposite(),
        };
        self.pairing.requests = Some(requests);
        match head {
            Head::Request(request) if requests == self.direction => self.request(request, start, tid),
            Head::Response(response) if requests != self.direction => self.response(response),
            _ => {
                // A head of the wrong kind for this direction: not ours to pair.
                self.scope.counters.parse_errors += 1;
                self.pairing.skip_response = true;
                Framing {
                    body: BodyLength::None,
                    keep: 0,
                    stop: false,
                }
            }
        }
    }

    fn end(&mut self, at: Timestamp, _tid: u32, body_size: u64, body: Option<Vec<u8>>) {
        let pairing = &mut *self.pairing;
        if pairing.requests == Some(self.direction) {
            if let Some(pending) = pairing.queue.iter_mut().rev().find(|p| !p.request_done) {
                pending.request_done = true;
                pending.request_body_size = body_size;
                pending.request_body = body;
            }
            return;
        }
        if std::mem::take(&mut pairing.skip_response) {
            return;
        }
        if pairing.queue.front().is_none_or(|p| p.response.is_none()) {
            return;
        }
        let Some(mut p) = pairing.queue.pop_front() else { return };
        let Some(response) = p.response.take() else { return };
        if response.status == 101 && p.request.h2c {
            // Its span is HTTP/2's stream 1, answered there.
            pairing.h2c = Some(p);
            return;
        }
        let http = HttpExchange {
            request: p.request,
            response,
            request_body_size: p.request_body_size,
            response_body_size: body_size,
            request_body: p.request_body,
            response_body: body,
        };
        self.scope.out.push(Exchange {
            protocol: Protocol::Http1,
            request_direction: self.direction.opposite(),
            start: p.start,
            end: at,
            context: p.context,
            parent: p.parent,
            remote: None,
            detail: Detail::Http(Box::new(http)),
        });
    }

    fn counters(&mut self) -> &mut Counters {
        self.scope.counters
    }

    fn lost(&mut self, at: Timestamp) {
        let pairing = &mut *self.pairing;
        let scope = &mut *self.scope;
        if pairing.requests == Some(self.direction) {
            // The request being read, if any, is gone; its response will be an orphan.
            if pairing.queue.back().is_some_and(|p| !p.request_done) {
                if let Some(p) = pairing.queue.pop_back() {
                    scope.active.leave(scope.pid, p.tid, p.context.span_id);
                }
                scope.counters.unanswered_requests += 1;
            }
            return;
        }
        if !std::mem::take(&mut pairing.skip_response) && pairing.queue.front().is_some_and(|p| p.response.is_some()) {
            pairing.queue.pop_front();
            scope.counters.unanswered_requests += 1;
        }
        // Responses to requests sent before `at` may have been in what was
        // lost: pairing them with later responses would be wrong.
        pairing.drop_waiting(scope, Some(at));
    }
}
