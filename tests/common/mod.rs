//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod nginx;

#[allow(unused_imports)] // not every test file uses it
pub use sonde::registry;

/// The sonde binary under test.
pub fn sonde() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_sonde"))
}
