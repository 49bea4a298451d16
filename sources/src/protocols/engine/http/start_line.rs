//! Recognising a start line without parsing it: where protocol detection
//! and resynchronisation look for the next message.

use super::head::{Kind, KNOWN_METHODS};

/// Whether `data` starts with a start line of `kind` (either kind when
/// `None`): a status line `HTTP/1.x NNN`, or a request line whose method
/// is known, or an uppercase token followed by a target and `HTTP/1.`.
pub fn start_line(data: &[u8], kind: Option<Kind>) -> Option<Kind> {
    if kind != Some(Kind::Request) && is_status_line(data) {
        return Some(Kind::Response);
    }
    if kind != Some(Kind::Response) && is_request_line(data) {
        return Some(Kind::Request);
    }
    None
}

fn is_status_line(data: &[u8]) -> bool {
    data.len() >= 12
        && data.starts_with(b"HTTP/1.")
        && data[7].is_ascii_digit()
        && data[8] == b' '
        && data[9..12].iter().all(u8::is_ascii_digit)
}

fn is_request_line(data: &[u8]) -> bool {
    let Some(space) = data.iter().take(21).position(|b| *b == b' ') else {
        return false;
    };
    let method = &data[..space];
    if method.is_empty()
        || !method
            .iter()
            .all(|b| b.is_ascii_uppercase() || *b == b'-' || *b == b'_')
    {
        return false;
    }
    let known = KNOWN_METHODS.iter().any(|m| m.as_bytes() == method);
    let line_end = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let line = &data[space + 1..line_end];
    let has_version = line.windows(8).any(|w| w == b" HTTP/1.");
    let target_ok = line.first().is_some_and(|b| b.is_ascii_graphic());
    target_ok && (has_version || (known && line_end == data.len()))
}
