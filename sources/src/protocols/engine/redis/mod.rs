//! Redis (RESP2 and RESP3): `decoder` reads each direction's frames,
//! `command` names requests, `reply` classifies server frames, `pairing`
//! pairs commands with replies first in, first out (pipelining answers in
//! order), and `sniff` detects the protocol.

mod command;
mod decoder;
mod frame;
mod pairing;
mod reply;
mod sniff;

use sonde_core::event::Timestamp;

use super::super::model::Direction;
use super::reassembly::{Bytes, Piece};
use super::session::{Scope, Session};
use decoder::{Decoder, HoleOutcome, Origin};
use pairing::Pairing;
pub use sniff::looks_like_redis;

/// One Redis connection.
#[derive(Debug)]
pub struct RedisSession {
    egress: Decoder,
    ingress: Decoder,
    pairing: Pairing,
    frames: Vec<frame::Frame>,
    failed: bool,
}

impl RedisSession {
    /// A session; `requests` is the direction commands go, when known.
    pub fn new(requests: Option<Direction>) -> Self {
        RedisSession {
            egress: Decoder::default(),
            ingress: Decoder::default(),
            pairing: Pairing::new(requests),
            frames: Vec::new(),
            failed: false,
        }
    }
}

impl Session for RedisSession {
    fn feed(&mut self, direction: Direction, piece: Piece<'_>, scope: &mut Scope<'_>) {
        if self.failed {
            return;
        }
        let decoder = match direction {
            Direction::Egress => &mut self.egress,
            Direction::Ingress => &mut self.ingress,
        };
        let mut frames = std::mem::take(&mut self.frames);
        let result = match piece.bytes {
            Bytes::Data(data) => {
                let origin = Origin {
                    at: piece.at,
                    tid: piece.tid,
                    boundary: piece.boundary,
                };
                let inline = self.pairing.requests.is_none_or(|r| r == direction);
                decoder.data(data, origin, inline, &mut frames)
            }
            Bytes::Hole(n) => {
                match decoder.hole(n, piece.at, &mut frames) {
                    HoleOutcome::Skipped => scope.counters.skipped_body_gaps += 1,
                    HoleOutcome::Lost => {
                        scope.counters.gaps += 1;
                        self.pairing.lost(scope);
                    }
                    HoleOutcome::Ignored => {}
                }
                Ok(())
            }
        };
        for frame in frames.drain(..) {
            if !self.pairing.frame(direction, frame, scope) && !self.pairing.paired {
                // Before anything paired, a frame of the wrong kind means
                // detection was wrong.
                self.failed = true;
            }
        }
        // A burst of small pipelined frames must not keep a large buffer.
        frames.shrink_to(16);
        self.frames = frames;
        if result.is_err() {
            if self.pairing.paired {
                scope.counters.parse_errors += 1;
                self.pairing.lost(scope);
                decoder_of(self, direction).resync();
            } else {
                self.failed = true;
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
        self.pairing.requests
    }

    fn failed(&self) -> bool {
        self.failed
    }
}

fn decoder_of(session: &mut RedisSession, direction: Direction) -> &mut Decoder {
    match direction {
        Direction::Egress => &mut session.egress,
        Direction::Ingress => &mut session.ingress,
    }
}
