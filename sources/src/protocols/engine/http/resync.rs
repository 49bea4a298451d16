//! Finding the next start line after joining a connection mid-way, a hole
//! or bad bytes: at a syscall's first byte or after a line feed. A start
//! line cut across syscalls is found too: the bytes after the last
//! candidate position are carried into the next piece (a few dozen at most).

use std::borrow::Cow;

use sonde_core::event::Timestamp;

use super::parser::{Parser, State};
use super::start_line::start_line;

/// Longest carried tail: longer than any method plus a space, or a status
/// line's first 12 bytes.
const MAX_CARRY: usize = 32;

impl Parser {
    /// Looks for a start line in what was carried plus `data`. On success the
    /// parser is reading a head (holding the carried part of it) and the
    /// result is where in `data` that head goes on.
    pub(super) fn resync(&mut self, data: &[u8], boundary: bool, now: (Timestamp, u32)) -> Option<usize> {
        let carried = std::mem::take(&mut self.carry);
        let since = self.carry_since.take();
        let joined: Cow<'_, [u8]> = if carried.is_empty() {
            Cow::Borrowed(data)
        } else {
            Cow::Owned([carried.as_slice(), data].concat())
        };
        // The carried tail's start, this syscall's first byte, line starts.
        let first = (boundary || !carried.is_empty()).then_some(0);
        let syscall = (boundary && !carried.is_empty()).then_some(carried.len());
        let candidates = first.into_iter().chain(syscall).chain(
            joined
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let mut last = None;
        for at in candidates {
            if let Some(kind) = start_line(&joined[at..], self.kind) {
                self.kind = Some(kind);
                let (buf, start, resume) = if at < carried.len() {
                    (joined[at..carried.len()].to_vec(), since.or(Some(now)), 0)
                } else {
                    (Vec::new(), None, at - carried.len())
                };
                self.state = State::Head { buf, start };
                return Some(resume);
            }
            last = Some(at);
        }
        if let Some(at) = last.filter(|at| joined.len() - at < MAX_CARRY) {
            self.carry = joined[at..].to_vec();
            self.carry_since = if at < carried.len() { since } else { Some(now) };
        }
        None
    }
}
