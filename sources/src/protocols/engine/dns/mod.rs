//! DNS: the exchange a DNS session produces (one query and its answer)
//! and its span fields; `message` parses headers and questions, `answers`
//! the A/AAAA records, `tcp` frames TCP streams, `pairing` pairs queries
//! with responses, `session` ties them, `sniff` detects the protocol.

mod answers;
pub mod fields;
mod message;
mod names;
mod pairing;
mod session;
mod sniff;
mod tcp;

pub use session::DnsSession;
pub use sniff::looks_like_dns;

use std::net::IpAddr;

use sonde_core::event::SharedStr;

/// Answer addresses kept per exchange.
pub const MAX_ADDRESSES: usize = 8;

/// One query and its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsExchange {
    /// `dns.question.name`, lower case, without the trailing dot.
    pub name: SharedStr,
    /// The question's type: `A`, `AAAA`, `SRV` … (`TYPE65` for ones
    /// without a mnemonic).
    pub qtype: SharedStr,
    /// The response code: `NOERROR`, `NXDOMAIN`, `SERVFAIL` … (`RCODE11`
    /// for ones without a mnemonic).
    pub rcode: SharedStr,
    /// Records in the answer section.
    pub answers: u16,
    /// The A and AAAA records of the answer, at most [`MAX_ADDRESSES`].
    pub addresses: Vec<IpAddr>,
    /// Carried over TCP (length-prefixed) rather than UDP.
    pub tcp: bool,
    /// The response had the TC (truncated) bit.
    pub truncated: bool,
}

impl DnsExchange {
    /// Whether the lookup failed (any code but `NOERROR`; an empty
    /// `NOERROR` answer is a success with no data).
    pub fn failed(&self) -> bool {
        self.rcode.as_str() != "NOERROR"
    }
}
