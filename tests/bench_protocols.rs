//! The protocols benchmark's reading of the agent's metrics
//! (benches/protocols), tested here: bench targets without the libtest
//! harness never compile their `#[cfg(test)]` modules.

#[allow(dead_code)]
#[path = "../benches/protocols/main.rs"]
mod protocols;
