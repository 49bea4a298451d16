//! One DNS socket's session. Its transport is told by its first message:
//! a datagram starts with the header, a TCP stream with a two-byte length
//! (the two cannot be confused: read the other way, a message would need
//! flags no query or response has). The direction of each exchange comes
//! from the query itself (QR = 0 is sent by the client), so the role of
//! the socket need not be known.

use sonde_core::event::Timestamp;

use super::super::super::model::Direction;
use super::super::reassembly::{Bytes, Piece};
use super::super::session::{Scope, Session};
use super::message::{header, question, ParseError, HEADER};
use super::pairing::{Message, Pairing};
use super::tcp::{Framed, Framer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

/// One DNS socket.
#[derive(Debug, Default)]
pub struct DnsSession {
    transport: Option<Transport>,
    egress: Framer,
    ingress: Framer,
    pairing: Pairing,
    /// Queries and responses that parsed.
    understood: u64,
    requests: Option<Direction>,
    failed: bool,
}

impl DnsSession {
    /// A session with nothing seen yet.
    pub fn new() -> Self {
        DnsSession::default()
    }

    /// A datagram is whole and parses; a stream's first piece may be any
    /// prefix of a length and a message.
    fn transport_of(data: &[u8]) -> Option<Transport> {
        if header(data).is_ok() && question(data).is_ok() {
            Some(Transport::Udp)
        } else if data.len() < 2 + HEADER || header(&data[2..]).is_ok() {
            Some(Transport::Tcp)
        } else {
            None
        }
    }

    /// One message (a datagram, or a framed TCP message).
    fn message(
        &mut self,
        bytes: &[u8],
        whole: bool,
        piece: &Piece<'_>,
        direction: Direction,
        at: Timestamp,
        scope: &mut Scope<'_>,
    ) {
        let parsed = header(bytes).and_then(|h| question(bytes).map(|(q, _)| (h, q)));
        let (header, question) = match parsed {
            Ok(parsed) => parsed,
            Err(ParseError::Short) if bytes.len() >= 12 => {
                // Cut before its question ended: nothing to pair it by.
                scope.counters.gaps += 1;
                return;
            }
            Err(_) => {
                if self.understood == 0 {
                    self.failed = true;
                } else {
                    scope.counters.parse_errors += 1;
                }
                return;
            }
        };
        self.understood += 1;
        let message = Message {
            header,
            question,
            whole: whole.then_some(bytes),
            direction,
            peer: piece.peer,
            at,
            tid: piece.tid,
            tcp: self.transport == Some(Transport::Tcp),
        };
        if header.response {
            self.pairing.response(message, scope);
        } else {
            self.requests = Some(direction);
            self.pairing.query(message, scope);
        }
    }
}

impl Session for DnsSession {
    fn feed(&mut self, direction: Direction, piece: Piece<'_>, scope: &mut Scope<'_>) {
        if self.failed {
            return;
        }
        let transport = match (self.transport, piece.bytes) {
            (Some(known), _) => known,
            (None, Bytes::Data(data)) => match DnsSession::transport_of(data) {
                Some(found) => *self.transport.insert(found),
                None => {
                    self.failed = true;
                    return;
                }
            },
            (None, Bytes::Hole(_)) => return,
        };
        match (transport, piece.bytes) {
            (Transport::Udp, Bytes::Data(data)) => self.message(data, true, &piece, direction, piece.at, scope),
            // The datagram before it was cut: it was parsed as far as it went.
            (Transport::Udp, Bytes::Hole(_)) => scope.counters.skipped_body_gaps += 1,
            (Transport::Tcp, bytes) => {
                let framer = match direction {
                    Direction::Egress => &mut self.egress,
                    Direction::Ingress => &mut self.ingress,
                };
                let mut framed: Vec<Framed> = Vec::new();
                let in_place = match bytes {
                    Bytes::Data(data) => framer.data(data, piece.boundary, piece.at, &mut framed),
                    Bytes::Hole(n) => framer.hole(n, piece.at, &mut framed),
                };
                if !in_place {
                    scope.counters.gaps += 1;
                }
                for f in framed {
                    self.message(&f.bytes, f.whole, &piece, direction, f.at, scope);
                }
            }
        }
    }

    fn close(&mut self, _at: Timestamp, scope: &mut Scope<'_>) {
        self.pairing.drop_waiting(scope, None);
    }

    fn expire(&mut self, before: Timestamp, scope: &mut Scope<'_>) {
        self.pairing.drop_waiting(scope, Some(before));
    }

    fn memory(&self) -> usize {
        self.egress.memory() + self.ingress.memory() + self.pairing.memory()
    }

    fn request_direction(&self) -> Option<Direction> {
        self.requests
    }

    fn failed(&self) -> bool {
        self.failed
    }
}
