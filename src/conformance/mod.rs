//! `sonde conformance` (hidden): does every eBPF source work on *this*
//! kernel? Each source's check loads and attaches it for real, drives a
//! small workload of its own (disk I/O on a loop device, loopback TCP, a
//! busy loop …) and verifies that the source saw it, against an
//! independent count where the kernel keeps one. One JSON line per source
//! on stdout, for `cargo xtask kernels`, which runs this inside VMs of
//! other kernels (CO-RE is only a promise until tried there).
//!
//! A source adds its check as one file here and one line in [`CHECKS`];
//! an eBPF source of [`sonde_ebpf::sources::SOURCES`] without a check is
//! reported as failed, so a new source cannot skip the matrix.

mod disk_latency;
mod energy;
mod net_flows;
mod profile;
mod tcp;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use sonde_ebpf::{LoadError, ReadError};

use crate::doctor::{checks, diagnose};

/// One source's conformance check.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The source type it checks, as registered.
    pub source: &'static str,
    /// Loads the source, drives its workload, verifies what it reported;
    /// on success returns what it saw, in one line for the report.
    pub run: fn() -> Result<String, CheckError>,
}

/// Every source's check, in the order they run.
pub const CHECKS: &[Check] = &[
    disk_latency::CHECK,
    profile::CHECK,
    tcp::CHECK,
    net_flows::CHECK,
    energy::CHECK,
];

/// Why a check failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The source did not load or attach: `sonde doctor` explains it the same way.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Its maps or buffers could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The workload could not run (not the source's fault, but no verdict either).
    #[error("workload: {what}: {source}")]
    Workload {
        /// What was being done.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// It loaded, but what it reported does not match the workload.
    #[error("implausible: {0}")]
    Implausible(String),
}

impl CheckError {
    /// A workload error, with what was being done.
    pub fn workload(what: &'static str) -> impl FnOnce(std::io::Error) -> CheckError {
        move |source| CheckError::Workload { what, source }
    }

    fn stage(&self) -> &'static str {
        match self {
            CheckError::Load(_) => "load",
            CheckError::Read(_) => "read",
            CheckError::Workload { .. } => "workload",
            CheckError::Implausible(_) => "verify",
        }
    }
}

/// Fails with [`CheckError::Implausible`] unless `condition` holds.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), CheckError> {
    if condition {
        Ok(())
    } else {
        Err(CheckError::Implausible(message()))
    }
}

/// Runs the checks of `only` (every source when empty) and prints the
/// JSON lines: first the kernel, then one per source. Exits 1 when one failed.
pub fn run(only: &[String]) -> anyhow::Result<ExitCode> {
    let release = sonde_ebpf::probe::kernel_release();
    emit(&json!({ "kind": "kernel", "release": release }));
    let mut facts: Option<checks::Facts> = None;
    let mut all_ok = true;
    for source in sonde_ebpf::sources::SOURCES {
        if !only.is_empty() && !only.iter().any(|s| s == source.source_type) {
            continue;
        }
        let started = Instant::now();
        let result = match CHECKS.iter().find(|c| c.source == source.source_type) {
            Some(check) => (check.run)(),
            None => Err(CheckError::Implausible(
                "no conformance check (add one in src/conformance/)".to_string(),
            )),
        };
        let seconds = started.elapsed().as_secs_f64();
        let min_kernel = format!("{}.{}", source.min_kernel.0, source.min_kernel.1);
        let line = match &result {
            Ok(evidence) => json!({
                "kind": "source", "source": source.source_type, "ok": true,
                "evidence": evidence, "seconds": seconds, "min_kernel": min_kernel,
            }),
            Err(error) => {
                all_ok = false;
                // A load failure is explained exactly as `sonde doctor` would.
                let (reason, fix) = match error {
                    CheckError::Load(load) => {
                        let facts = facts.get_or_insert_with(checks::gather);
                        let d = diagnose::diagnose(load, facts, source.min_kernel);
                        (d.reason, Some(d.fix))
                    }
                    other => (other.to_string(), None),
                };
                json!({
                    "kind": "source", "source": source.source_type, "ok": false,
                    "stage": error.stage(), "reason": reason, "fix": fix, "seconds": seconds,
                    "min_kernel": min_kernel,
                })
            }
        };
        emit(&line);
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn emit(line: &serde_json::Value) {
    // Flushed per line: in a VM the report must survive a later crash.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ebpf_source_has_a_check() {
        for source in sonde_ebpf::sources::SOURCES {
            assert!(
                CHECKS.iter().any(|c| c.source == source.source_type),
                "eBPF source `{}` has no conformance check in src/conformance/",
                source.source_type
            );
        }
    }
}
