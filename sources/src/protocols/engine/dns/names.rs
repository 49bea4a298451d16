//! Mnemonics of query types and response codes: a bounded vocabulary for
//! span fields and metric labels, numbers for the rest (`TYPE65534`).

use sonde_core::event::SharedStr;

/// `A`, `AAAA`, … or `TYPE{n}`.
pub fn qtype(n: u16) -> SharedStr {
    let name = match n {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        52 => "TLSA",
        64 => "SVCB",
        65 => "HTTPS",
        251 => "IXFR",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{n}").into(),
    };
    SharedStr::from_static(name)
}

/// `NOERROR`, `NXDOMAIN`, … or `RCODE{n}`.
pub fn rcode(n: u8) -> SharedStr {
    let name = match n {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return format!("RCODE{n}").into(),
    };
    SharedStr::from_static(name)
}
