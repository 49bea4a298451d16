//! The span fields of a DNS exchange. The OpenTelemetry conventions name
//! `dns.question.name` (and `error.type` for failures); the rest are
//! sonde's, under `dns.*` where the conventions leave room.

use sonde_core::event::{Attributes, SharedStr};

use super::super::strings::Strings;

use super::DnsExchange;

/// `DNS {type}`: low-cardinality, as span names should be.
pub fn span_name(dns: &DnsExchange, strings: &mut Strings) -> SharedStr {
    strings.joined(&SharedStr::from_static("DNS"), &dns.qtype)
}

/// Adds the exchange's fields.
pub fn fill(dns: &DnsExchange, fields: &mut Attributes) {
    fields.insert("dns.question.name", dns.name.clone());
    fields.insert("dns.question.type", dns.qtype.clone());
    fields.insert("dns.response_code", dns.rcode.clone());
    fields.insert("sonde.dns.answer.count", u32::from(dns.answers));
    if !dns.addresses.is_empty() {
        let addresses: Vec<String> = dns.addresses.iter().map(|a| a.to_string()).collect();
        fields.insert("dns.answers", addresses.join(","));
    }
    fields.insert("network.transport", if dns.tcp { "tcp" } else { "udp" });
    if dns.truncated {
        fields.insert("sonde.dns.truncated", true);
    }
    if dns.failed() {
        fields.insert("error.type", dns.rcode.clone());
    }
}
