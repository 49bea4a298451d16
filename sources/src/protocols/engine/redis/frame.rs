//! What a Redis session keeps of one complete top-level RESP frame: just
//! enough to name the command (requests) or classify the reply, never the
//! values. Bounded: a few argument prefixes of [`MAX_ARG`] bytes.

use sonde_core::event::Timestamp;

/// Arguments of a request kept (command, subcommand or key, one more).
pub const MAX_ARGS: usize = 3;
/// Bytes kept of each kept argument, and of a simple string or error.
pub const MAX_ARG: usize = 128;

/// The RESP type of a top-level frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `+` simple string.
    Simple,
    /// `-` simple error or `!` blob error.
    Error,
    /// `:`, `,`, `#`, `(`, `_`: integers, doubles, booleans, big numbers, null.
    Scalar,
    /// `$` bulk string or `=` verbatim string (or a RESP2 null bulk).
    Bulk,
    /// `*` array (RESP2 null arrays included).
    Array,
    /// `~` set.
    Set,
    /// `%` map.
    Map,
    /// `>` push: out-of-band data, never a reply.
    Push,
    /// A command written as one line of words (`PING\r\n`).
    Inline,
}

/// One complete top-level frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Its type.
    pub kind: Kind,
    /// Elements of an aggregate (pairs of a map), when not null.
    pub len: Option<u64>,
    /// The first [`MAX_ARGS`] bulk (or simple) strings among an
    /// aggregate's direct elements, or an inline command's first words,
    /// each cut at `MAX_ARG + 1` bytes (one more than is ever shown: a
    /// longer one was cut); empty for other frames.
    pub args: Vec<Vec<u8>>,
    /// A simple string's or an error's text, cut at [`MAX_ARG`] bytes.
    pub text: Vec<u8>,
    /// Its first byte's time.
    pub start: Timestamp,
    /// Its last byte's time.
    pub end: Timestamp,
    /// The thread that moved its first byte.
    pub tid: u32,
}

impl Frame {
    /// Whether it is an array of strings (a command, as clients send them).
    pub fn is_command(&self) -> bool {
        matches!(self.kind, Kind::Inline) || (self.kind == Kind::Array && self.len.is_some_and(|n| n > 0))
    }
}
