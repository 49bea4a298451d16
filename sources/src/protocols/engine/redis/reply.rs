//! A frame from the server: a reply to pair, or out-of-band data (RESP3
//! pushes, pub/sub messages on a subscribed RESP2 connection) that answers
//! no command; and what a reply says (error prefix, element count).

use sonde_core::event::SharedStr;

use super::command::SUBSCRIBE;
use super::frame::{Frame, Kind};

/// What a server frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The reply to the oldest waiting command.
    Reply,
    /// A subscribe-family confirmation (`subscribe`, `unsubscribe` …):
    /// the reply of the waiting command of that name, if it is first.
    Confirmation(&'static str),
    /// Out-of-band data: answers nothing.
    Push,
}

/// Whether `frame` answers a command; `subscribed` once the connection
/// sent a subscribe-family command (RESP2 messages are plain arrays then).
pub fn role(frame: &Frame, subscribed: bool) -> Role {
    let aggregate = match frame.kind {
        Kind::Push => true,
        Kind::Array => subscribed,
        _ => false,
    };
    if !aggregate {
        return Role::Reply;
    }
    let first = frame.args.first().map(|a| a.to_ascii_uppercase());
    if let Some(kind) = SUBSCRIBE
        .iter()
        .copied()
        .find(|s| first.as_deref() == Some(s.as_bytes()))
    {
        return Role::Confirmation(kind);
    }
    let message = matches!(first.as_deref(), Some(b"MESSAGE" | b"PMESSAGE" | b"SMESSAGE"));
    if frame.kind == Kind::Push || message {
        Role::Push
    } else {
        Role::Reply
    }
}

/// What a reply tells a span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The error prefix (`ERR`, `WRONGTYPE`, `NOAUTH`), upper case; `_OTHER`
    /// when it is not a word.
    pub error: Option<SharedStr>,
    /// Elements of an array or set, pairs of a map.
    pub rows: Option<u64>,
    /// The server did not know the command (its name is then not kept:
    /// unknown names would grow the operation vocabulary without bound).
    pub unknown_command: bool,
    /// A plain `+OK`-style success.
    pub ok: bool,
}

/// What `frame` (a reply) says.
pub fn outcome(frame: &Frame) -> Outcome {
    match frame.kind {
        Kind::Error => {
            let word = frame.text.split(|b| *b == b' ').next().unwrap_or_default();
            let valid = (1..=32).contains(&word.len()) && word.iter().all(u8::is_ascii_alphabetic);
            let code = if valid {
                String::from_utf8_lossy(word).to_ascii_uppercase()
            } else {
                "_OTHER".to_string()
            };
            let unknown =
                frame.text.starts_with(b"ERR unknown command") || frame.text.starts_with(b"ERR unknown subcommand");
            Outcome {
                error: Some(code.into()),
                unknown_command: unknown,
                ..Outcome::default()
            }
        }
        Kind::Array | Kind::Set | Kind::Map => Outcome {
            rows: frame.len,
            ..Outcome::default()
        },
        Kind::Simple => Outcome {
            ok: true,
            ..Outcome::default()
        },
        _ => Outcome::default(),
    }
}
