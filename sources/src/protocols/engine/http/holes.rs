//! What a hole (bytes moved but not captured, or chunks lost) does to a
//! direction's parser: inside a body of known length it is skipped;
//! anywhere else the message is lost and the parser resynchronises.

use super::super::reassembly::Piece;
use super::handler::Handler;
use super::parser::{Parser, State};

impl Parser {
    /// Skips `n` bytes that were not seen.
    pub(super) fn hole(&mut self, n: u64, piece: Piece<'_>, h: &mut dyn Handler) {
        match &mut self.state {
            State::Stopped => {}
            State::Resync => self.carry.clear(),
            State::Head { .. } => {
                h.lost(piece.at);
                h.counters().gaps += 1;
                self.state = State::Resync;
            }
            State::Body(left) if n <= *left => {
                *left -= n;
                self.body_size += n;
                h.counters().skipped_body_gaps += 1;
                if *left == 0 {
                    self.finish(piece.at, piece.tid, h);
                }
            }
            State::Body(left) => {
                // The body ended inside the hole, and what followed is lost.
                self.body_size += *left;
                self.finish(piece.at, piece.tid, h);
                h.counters().gaps += 1;
                h.lost(piece.at);
                if !self.stopped() {
                    self.state = State::Resync;
                }
            }
            State::Chunked(decoder) => {
                if decoder.hole(n) {
                    self.body_size += n;
                    h.counters().skipped_body_gaps += 1;
                } else {
                    h.counters().gaps += 1;
                    h.lost(piece.at);
                    self.state = State::Resync;
                }
            }
            State::UntilClose => {
                self.body_size += n;
                h.counters().skipped_body_gaps += 1;
            }
        }
    }
}
