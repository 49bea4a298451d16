//! Whether a connection's first bytes are MySQL: the server's greeting
//! (sequence 0, protocol 10, a NUL-terminated version starting with a
//! digit), or on a connection joined mid-way a COM_QUERY or
//! COM_STMT_PREPARE (sequence 0) whose text starts with an SQL keyword.

use super::super::infer::Clue;
use super::super::sql;
use super::command;

/// Whether `data` (one direction's first bytes) looks like MySQL.
pub fn looks_like_mysql(clue: &Clue, data: &[u8]) -> bool {
    let requests = clue.sends_requests();
    (requests != Some(true) && greeting(data)) || (requests != Some(false) && query(data))
}

fn header(data: &[u8]) -> Option<(usize, u8, &[u8])> {
    let length = u32::from_le_bytes([*data.first()?, *data.get(1)?, *data.get(2)?, 0]) as usize;
    Some((length, *data.get(3)?, data.get(4..)?))
}

/// The server's first packet.
pub fn greeting(data: &[u8]) -> bool {
    let Some((length, seq, payload)) = header(data) else {
        return false;
    };
    if seq != 0 || !(32..=1024).contains(&length) || payload.first() != Some(&10) {
        return false;
    }
    let version = &payload[1..payload.len().min(length).min(80)];
    match version.iter().position(|b| *b == 0) {
        Some(end) => end >= 3 && version[0].is_ascii_digit() && version[..end].iter().all(|b| b.is_ascii_graphic()),
        None => false,
    }
}

/// A client's COM_QUERY or COM_STMT_PREPARE with SQL text.
fn query(data: &[u8]) -> bool {
    let Some((length, seq, payload)) = header(data) else {
        return false;
    };
    if seq != 0 || !(2..1 << 24).contains(&length) {
        return false;
    }
    if !matches!(payload.first(), Some(&command::QUERY | &command::STMT_PREPARE)) {
        return false;
    }
    // A whole packet is followed by nothing or by another plausible header.
    let text = &payload[1..payload.len().min(length).min(257)];
    let printable = text
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace() || *b >= 0x80);
    printable && sql::operation(&String::from_utf8_lossy(text)).is_some()
}
