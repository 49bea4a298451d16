//! Detection: whether a direction's first bytes are RESP. Strict, since a
//! stray `+` or `:` is easy to meet: a client's command must be a whole
//! `*<n>\r\n$<m>\r\n<letters>\r\n` (or a known inline command line), a
//! server's reply a whole, well-formed first line of a reply.

use super::super::infer::Clue;
use super::decoder::starts_frame;

/// Inline commands recognised on a connection's first bytes.
const INLINE: &[&str] = &[
    "AUTH", "COMMAND", "DBSIZE", "DEL", "ECHO", "EXISTS", "FLUSHALL", "FLUSHDB", "GET", "HELLO", "INCR", "INFO",
    "KEYS", "LASTSAVE", "MONITOR", "PING", "QUIT", "ROLE", "SELECT", "SET", "TIME",
];

/// Whether `data` starts a Redis conversation from the side `clue` tells.
pub fn looks_like_redis(clue: &Clue, data: &[u8]) -> bool {
    if clue.datagram {
        return false;
    }
    let (client, server) = match clue.sends_requests() {
        Some(requests) => (requests, !requests),
        None => (true, true),
    };
    (client && (command(data) || inline(data))) || (server && reply(data))
}

/// The first line (without CRLF) and what follows, when the line ends
/// within `max` bytes.
fn line(data: &[u8], max: usize) -> Option<(&[u8], &[u8])> {
    let end = data.windows(2).take(max).position(|w| w == b"\r\n")?;
    Some((&data[..end], &data[end + 2..]))
}

fn count(digits: &[u8], max: i64) -> Option<i64> {
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let n: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (-1..=max).contains(&n).then_some(n)
}

fn command(data: &[u8]) -> bool {
    let Some((head, rest)) = data.strip_prefix(b"*").and_then(|d| line(d, 12)) else {
        return false;
    };
    let Some((bulk, rest)) = rest.strip_prefix(b"$").and_then(|d| line(d, 4)) else {
        return false;
    };
    let (Some(n), Some(m)) = (count(head, 1 << 20), count(bulk, 32)) else {
        return false;
    };
    // `-1` (a null) is no command: checked before it is used as a length.
    if n < 1 || m < 1 {
        return false;
    }
    let m = m as usize;
    rest.len() >= m + 2 && rest[..m].iter().all(u8::is_ascii_alphabetic) && &rest[m..m + 2] == b"\r\n"
}

fn inline(data: &[u8]) -> bool {
    let Some((text, _)) = line(data, 256) else { return false };
    let word = text.split(|b| *b == b' ').next().unwrap_or_default();
    let known = INLINE.iter().any(|c| c.as_bytes().eq_ignore_ascii_case(word));
    let printable = text.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    known && printable && !text.windows(5).any(|w| w == b"HTTP/")
}

fn reply(data: &[u8]) -> bool {
    let Some((&kind, rest)) = data.split_first() else {
        return false;
    };
    let Some((text, after)) = line(rest, 64) else {
        return false;
    };
    match kind {
        b'+' => (1..=32).contains(&text.len()) && text.iter().all(u8::is_ascii_alphabetic),
        b'-' => {
            let word = text.split(|b| *b == b' ').next().unwrap_or_default();
            word.len() >= 2
                && word.iter().all(u8::is_ascii_uppercase)
                && text.iter().all(|b| b.is_ascii_graphic() || *b == b' ')
        }
        b':' => {
            let digits = text.strip_prefix(b"-").unwrap_or(text);
            (1..=19).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
        }
        b'$' => match count(text, 512 << 20) {
            Some(-1) => true,
            Some(n) => after.get(n as usize..n as usize + 2).is_none_or(|end| end == b"\r\n"),
            None => false,
        },
        b'*' | b'%' | b'~' => match count(text, 1 << 20) {
            Some(n) if n <= 0 => true,
            Some(_) => after
                .first()
                .is_some_and(|b| starts_frame(&after[..1], false) && *b != b'|'),
            None => false,
        },
        _ => false,
    }
}
