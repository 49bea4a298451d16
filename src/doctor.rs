//! `sonde doctor`: being written with the eBPF foundation (issue 3).

use std::path::Path;
use std::process::ExitCode;

/// Checks this node (placeholder until the eBPF foundation lands).
pub fn run(_config: Option<&Path>, _json: bool, _registry: &sonde_core::Registry) -> anyhow::Result<ExitCode> {
    anyhow::bail!("sonde doctor is not available in this build yet")
}
