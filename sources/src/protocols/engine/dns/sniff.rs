//! Detection: a plausible header (one question, a standard query, sane
//! counts) is easy for random bytes to match, so more is asked: over UDP,
//! a DNS port (`dns_ports`, 53 by default) or a strictly valid whole
//! question; over TCP, a DNS port and a length prefix in front of a header
//! and a question that parse.

use super::super::infer::Clue;
use super::message::{header, question, strictly_valid};
use super::tcp::starts_message;

/// Whether `data`, a direction's first bytes, starts DNS.
pub fn looks_like_dns(clue: &Clue, data: &[u8]) -> bool {
    let port = clue.dns_port;
    if clue.datagram {
        header(data).is_ok() && (port || strictly_valid(data))
    } else {
        port && starts_message(data) && question(&data[2..]).is_ok()
    }
}
