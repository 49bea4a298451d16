//! The network benchmark's parsers and report (benches/net), tested here:
//! bench targets without the libtest harness never compile their
//! `#[cfg(test)]` modules.

#[allow(dead_code)]
#[path = "../benches/net/main.rs"]
mod net;
