//! Whether a connection's first bytes are PostgreSQL: a startup packet or
//! an encryption request from the client; or, on a connection joined
//! mid-way, a Query or Parse whose text starts with an SQL keyword, or
//! backend messages up to a ReadyForQuery after a command's completion.

use super::super::infer::Clue;
use super::super::sql;
use super::frame::{valid, BACKEND, CANCEL_REQUEST, FRONTEND, GSSENC_REQUEST, PROTOCOL_3, SSL_REQUEST};
use super::messages::cstr;

/// Whether `data` (one direction's first bytes) looks like PostgreSQL.
pub fn looks_like_postgres(clue: &Clue, data: &[u8]) -> bool {
    let requests = clue.sends_requests();
    (requests != Some(false) && (startup(data) || frontend(data))) || (requests != Some(true) && backend(data))
}

fn startup(data: &[u8]) -> bool {
    if data.len() < 8 {
        return false;
    }
    let length = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let code = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    match code {
        SSL_REQUEST | GSSENC_REQUEST => length == 8,
        CANCEL_REQUEST => length == 16,
        // `user` is the one parameter every client sends.
        PROTOCOL_3 => (16..=10_000).contains(&length) && data[8..].windows(5).any(|w| w == b"user\0"),
        _ => false,
    }
}

/// A Query or Parse with SQL text.
fn frontend(data: &[u8]) -> bool {
    if data.len() < 6 || !matches!(data[0], b'Q' | b'P') {
        return false;
    }
    let length = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    if !valid(data[0], length, Some(FRONTEND)) || length > 1 << 24 {
        return false;
    }
    let body = &data[5..data.len().min(1 + length as usize)];
    let text = if data[0] == b'P' {
        let (name, rest) = cstr(body);
        if name.len() > 64 || rest.is_empty() {
            return false;
        }
        rest
    } else {
        body
    };
    let (text, _) = cstr(text);
    let printable = text
        .iter()
        .take(256)
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80);
    // A complete message ends with its string's NUL.
    let whole = data.len() < 1 + length as usize || data[length as usize] == 0;
    printable && whole && sql::operation(&String::from_utf8_lossy(&text[..text.len().min(256)])).is_some()
}

/// Backend messages, each plausible, up to a ReadyForQuery after a
/// CommandComplete, EmptyQueryResponse or ErrorResponse.
fn backend(data: &[u8]) -> bool {
    let mut rest = data;
    let mut completed = false;
    for _ in 0..64 {
        if rest.len() < 5 {
            return false;
        }
        let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]);
        if !valid(rest[0], length, Some(BACKEND)) || length > 1 << 24 {
            return false;
        }
        match rest[0] {
            b'Z' => return completed && rest.len() >= 6 && matches!(rest[5], b'I' | b'T' | b'E'),
            b'C' | b'I' | b'E' => completed = true,
            _ => {}
        }
        let Some(next) = rest.get(1 + length as usize..) else {
            return false;
        };
        rest = next;
    }
    false
}
