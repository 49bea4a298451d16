//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod golang;
pub mod nginx;
pub mod profile;
pub mod servers;
pub mod tracer;

#[allow(unused_imports)] // not every test file uses it
pub use sonde::registry;

/// The sonde binary under test.
pub fn sonde() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sonde"))
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `check` holds; fails the test after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `GET path` on loopback `port`: the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}
