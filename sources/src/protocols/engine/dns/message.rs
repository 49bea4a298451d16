//! A DNS message's header and question, parsed by hand from whatever
//! prefix of the message was captured: a datagram the capture cut short
//! still has both in its first bytes, and a whole-message parser (the
//! crate `answers` uses) refuses a cut message outright. Strict and
//! bounded: labels of at most 63 bytes, names of at most 255, compression
//! pointers only backwards and at most [`MAX_JUMPS`] of them.

/// Header bytes.
pub const HEADER: usize = 12;
/// Compression pointers followed in one name.
const MAX_JUMPS: usize = 16;

/// Why bytes are not a DNS message (or not one the engine pairs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes than a header and its question need.
    #[error("message cut before its question ended")]
    Short,
    /// Not a standard query (opcode 0) with one question.
    #[error("not a standard query with one question")]
    NotQuery,
    /// Counts or flags no sane message has.
    #[error("implausible header")]
    Implausible,
    /// A malformed name.
    #[error("malformed question name")]
    BadName,
}

/// The fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Transaction id.
    pub id: u16,
    /// QR: a response.
    pub response: bool,
    /// TC: truncated to fit the transport.
    pub truncated: bool,
    /// RCODE (the header's four bits).
    pub rcode: u8,
    /// ANCOUNT.
    pub answers: u16,
    /// NSCOUNT + ARCOUNT.
    pub others: u32,
}

/// The question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// Lower case, without the trailing dot (`.` for the root).
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// Its labels are host-name characters (letters, digits, `-`, `_`).
    pub strict: bool,
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// The header, when it is a plausible standard query or response with
/// one question (what detection and pairing accept).
pub fn header(data: &[u8]) -> Result<Header, ParseError> {
    if data.len() < HEADER {
        return Err(ParseError::Short);
    }
    let flags = u16_at(data, 2).ok_or(ParseError::Short)?;
    let count = |at| u16_at(data, at).unwrap_or(0);
    let (questions, answers, authority, additional) = (count(4), count(6), count(8), count(10));
    let response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let rcode = (flags & 0xf) as u8;
    if opcode != 0 || questions != 1 {
        return Err(ParseError::NotQuery);
    }
    let sane = if response {
        answers <= 512 && authority <= 64 && additional <= 64
    } else {
        // Queries carry no answers and no error; EDNS adds one record.
        rcode == 0 && answers == 0 && authority <= 2 && additional <= 2
    };
    if !sane {
        return Err(ParseError::Implausible);
    }
    Ok(Header {
        id: u16_at(data, 0).ok_or(ParseError::Short)?,
        response,
        truncated: flags & 0x0200 != 0,
        rcode,
        answers,
        others: u32::from(authority) + u32::from(additional),
    })
}

/// The question that follows the header, and where it ends.
pub fn question(data: &[u8]) -> Result<(Question, usize), ParseError> {
    let mut name = String::new();
    let mut strict = true;
    let mut at = HEADER;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *data.get(at).ok_or(ParseError::Short)? as usize;
        match len {
            0 => {
                end.get_or_insert(at + 1);
                break;
            }
            1..=63 => {
                let label = data.get(at + 1..at + 1 + len).ok_or(ParseError::Short)?;
                if name.len() + len + 1 > 255 {
                    return Err(ParseError::BadName);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    strict &= b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
                    let c = if b.is_ascii_graphic() && b != b'.' {
                        b.to_ascii_lowercase()
                    } else {
                        b'?'
                    };
                    name.push(c as char);
                }
                at += 1 + len;
            }
            0xc0..=0xff => {
                let target = (u16_at(data, at).ok_or(ParseError::Short)? & 0x3fff) as usize;
                jumps += 1;
                if target >= at || jumps > MAX_JUMPS {
                    return Err(ParseError::BadName);
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return Err(ParseError::BadName),
        }
    }
    let end = end.unwrap_or(at + 1);
    let qtype = u16_at(data, end).ok_or(ParseError::Short)?;
    let qclass = u16_at(data, end + 2).ok_or(ParseError::Short)?;
    if name.is_empty() {
        name.push('.');
    }
    Ok((
        Question {
            name,
            qtype,
            qclass,
            strict,
        },
        end + 4,
    ))
}

/// Whether `data` is, as far as it goes, a whole standard query or
/// response whose question is strictly valid: what a datagram off port 53
/// must be to be taken for DNS.
pub fn strictly_valid(data: &[u8]) -> bool {
    let Ok(header) = header(data) else { return false };
    let Ok((question, end)) = question(data) else {
        return false;
    };
    let class = matches!(question.qclass, 1 | 3 | 255) || (header.response && question.qclass & 0x7fff == 1);
    question.strict
        && question.qtype != 0
        && class
        && (end == data.len() || u32::from(header.answers) + header.others > 0)
}
