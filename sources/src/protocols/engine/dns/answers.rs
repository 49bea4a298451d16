//! The A and AAAA records of a whole response, read with `simple-dns`
//! (chosen over `hickory-proto` for its size: one small dependency-free
//! crate, also DeepFlow's choice; `dns-parser` is unmaintained). It is
//! only asked about whole messages whose counts fit their length: its
//! parser reserves room for every counted record before reading one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::RData;
use simple_dns::Packet;

use super::message::{Header, HEADER};
use super::MAX_ADDRESSES;

/// The smallest resource record: a root name, type, class, TTL, length.
const MIN_RECORD: usize = 11;

/// Up to [`MAX_ADDRESSES`] answer addresses of `data`, a whole message;
/// none when it does not parse.
pub fn addresses(data: &[u8], header: &Header) -> Vec<IpAddr> {
    let records = usize::from(header.answers) + header.others as usize;
    if header.answers == 0 || HEADER + records * MIN_RECORD > data.len() {
        return Vec::new();
    }
    let Ok(packet) = Packet::parse(data) else {
        return Vec::new();
    };
    packet
        .answers
        .iter()
        .filter_map(|record| match &record.rdata {
            RData::A(a) => Some(IpAddr::V4(Ipv4Addr::from(a.address))),
            RData::AAAA(aaaa) => Some(IpAddr::V6(Ipv6Addr::from(aaaa.address))),
            _ => None,
        })
        .take(MAX_ADDRESSES)
        .collect()
}
