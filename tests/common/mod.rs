//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use sonde_core::Registry;

/// Every component type the binary has.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    sonde_sources::register(&mut registry);
    sonde_transforms::register(&mut registry);
    sonde_sinks::register(&mut registry);
    registry
}

/// The sonde binary under test.
pub fn sonde() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sonde"))
}
