//! HTTP/1.x: `head` (httparse → owned heads), `chunked` (chunked bodies),
//! `parser` (one direction's framing and resynchronisation), `pairing`
//! (requests with responses, trace context) and `fields` (span fields).

mod chunked;
pub mod fields;
mod handler;
pub mod head;
mod holes;
mod pairing;
mod parser;
mod pending;
mod resync;
pub mod start_line;

use sonde_core::event::Timestamp;

use super::super::model::Direction;
use super::http2::head::Head;
use super::http2::{Http2Session, Upgraded};
use super::reassembly::Piece;
use super::session::{Scope, Session, Upgrade};
use super::settings::{Protocol, Settings};
use head::{Kind, Request, Response};
use pairing::Pairing;
use parser::Parser;
use start_line::start_line;

/// A paired request and response.
#[derive(Clone, Debug)]
pub struct HttpExchange {
    /// The request head.
    pub request: Request,
    /// The final response head.
    pub response: Response,
    /// Request body bytes (captured or not).
    pub request_body_size: u64,
    /// Response body bytes (captured or not).
    pub response_body_size: u64,
    /// The kept prefix of the request body, when bodies are on.
    pub request_body: Option<Vec<u8>>,
    /// The kept prefix of the response body, when bodies are on.
    pub response_body: Option<Vec<u8>>,
}

/// Whether `data` holds an HTTP/1.x start line at its start or after a
/// line feed.
pub fn looks_like_http(data: &[u8]) -> bool {
    std::iter::once(0)
        .chain(
            data.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .any(|at| start_line(&data[at..], None).is_some())
}

/// One HTTP/1.x connection.
#[derive(Debug)]
pub struct HttpSession {
    egress: Parser,
    ingress: Parser,
    pairing: Pairing,
}

fn kinds(requests: Option<Direction>) -> (Option<Kind>, Option<Kind>) {
    match requests {
        Some(Direction::Egress) => (Some(Kind::Request), Some(Kind::Response)),
        Some(Direction::Ingress) => (Some(Kind::Response), Some(Kind::Request)),
        None => (None, None),
    }
}

impl HttpSession {
    /// A session; `requests` is the direction requests go, when known;
    /// `in_sync` when both streams are seen from their first byte.
    pub fn new(requests: Option<Direction>, in_sync: bool) -> Self {
        let (egress, ingress) = kinds(requests);
        HttpSession {
            egress: Parser::new(egress, in_sync),
            ingress: Parser::new(ingress, in_sync),
            pairing: Pairing::new(requests),
        }
    }

    /// Once one direction's kind is known, the other's is its opposite;
    /// once the connection left HTTP, both directions stop.
    fn settle(&mut self) {
        if let Some(requests) = self.pairing.requests {
            let (egress, ingress) = kinds(Some(requests));
            self.egress.kind = egress;
            self.ingress.kind = ingress;
        }
        if self.pairing.upgraded {
            self.egress.stop();
            self.ingress.stop();
        }
    }
}

impl Session for HttpSession {
    fn feed(&mut self, direction: Direction, piece: Piece<'_>, scope: &mut Scope<'_>) {
        let parser = match direction {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        };
        let settings = scope.settings;
        parser.feed(piece, settings, &mut self.pairing.side(direction, scope));
        self.settle();
    }

    fn close(&mut self, at: Timestamp, scope: &mut Scope<'_>) {
        // Responses first: one read until the close ends here.
        let (first, second) = match self.pairing.requests {
            Some(Direction::Ingress) => (Direction::Egress, Direction::Ingress),
            _ => (Direction::Ingress, Direction::Egress),
        };
        for direction in [first, second] {
            let parser = match direction {
                Direction::Egress => &mut self.egress,
                Direction::Ingress => &mut self.ingress,
            };
            parser.close(at, &mut self.pairing.side(direction, scope));
        }
        self.pairing.drop_waiting(scope, None);
    }

    fn expire(&mut self, before: Timestamp, scope: &mut Scope<'_>) {
        self.pairing.drop_waiting(scope, Some(before));
    }

    fn memory(&self) -> usize {
        self.egress.memory() + self.ingress.memory() + self.pairing.memory()
    }

    fn request_direction(&self) -> Option<Direction> {
        self.pairing.requests
    }

    fn upgrade(&mut self, settings: &Settings) -> Option<Upgrade> {
        let pending = self.pairing.h2c.take()?;
        let requests = self.pairing.requests?;
        if !settings.protocols.contains(&Protocol::Http2) {
            return None;
        }
        let r = pending.request;
        let mut head = Head::default();
        // HTTP/2's head keeps owned text (an upgrade is rare).
        head.method = Some(r.method.to_string());
        head.path = Some(r.path.to_string());
        head.query = r.query;
        head.content_type = r.content_type.map(|t| t.to_string());
        head.traceparent = r.traceparent;
        head.headers = r.headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let upgraded = Upgraded {
            requests,
            request: head,
            start: pending.start,
            tid: pending.tid,
            context: pending.context,
            parent: pending.parent,
        };
        let session = Http2Session::upgraded(upgraded, settings.max_connection_bytes);
        let mut leftover = Vec::new();
        for (direction, parser) in [
            (Direction::Egress, &mut self.egress),
            (Direction::Ingress, &mut self.ingress),
        ] {
            if let Some((bytes, at, tid)) = parser.leftover.take() {
                leftover.push((direction, bytes, at, tid));
            }
        }
        // The peer answering first: its frames answer stream 1.
        leftover.sort_by_key(|(_, _, at, _)| *at);
        Some(Upgrade {
            session: Box::new(session),
            leftover,
        })
    }
}
