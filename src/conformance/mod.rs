//! `sonde conformance` (hidden): does every eBPF source work on *this*
//! kernel? Each source's check ([`EbpfSide::conformance`], in its folder's
//! `conformance.rs`) loads and attaches it for real, drives a small
//! workload of its own (disk I/O on a loop device, loopback TCP, a busy
//! loop …) and verifies that the source saw it, against an independent
//! count where the kernel keeps one. The same check is the body of the
//! source's real-kernel test. One JSON line per source on stdout, for
//! `cargo xtask kernels`, which runs this inside VMs of other kernels
//! (CO-RE is only a promise until tried there).
//!
//! The eBPF sources are found in the registry: a source that declares an
//! [`EbpfSide`] cannot leave out its check (the field is required), and a
//! source that needs `CAP_BPF` without declaring one fails a unit test.
//!
//! [`EbpfSide`]: sonde_core::registry::EbpfSide
//! [`EbpfSide::conformance`]: sonde_core::registry::EbpfSide::conformance

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::json;
use sonde_core::{BoxError, Registry};
use sonde_ebpf::{CheckError, LoadError};

use crate::doctor::{checks, diagnose};

/// Runs the checks of `only` (every eBPF source when empty) and prints the
/// JSON lines: first the kernel, then one per source. Exits 1 when one
/// failed, or when `only` names a type that is not an eBPF source.
pub fn run(registry: &Registry, only: &[String]) -> anyhow::Result<ExitCode> {
    let release = sonde_ebpf::probe::kernel_release();
    emit(&json!({ "kind": "kernel", "release": release }));
    let mut facts: Option<checks::Facts> = None;
    let mut all_ok = true;
    for unknown in only
        .iter()
        .filter(|o| !registry.ebpf_sources().any(|(name, _)| name == o.as_str()))
    {
        all_ok = false;
        emit(&json!({
            "kind": "source", "source": unknown, "ok": false, "stage": "select",
            "reason": "not an eBPF source type", "fix": null, "seconds": 0.0,
        }));
    }
    for (name, side) in registry.ebpf_sources() {
        if !only.is_empty() && !only.iter().any(|s| s == name) {
            continue;
        }
        let started = Instant::now();
        let result = (side.conformance)();
        let seconds = started.elapsed().as_secs_f64();
        let min_kernel = format!("{}.{}", side.min_kernel.0, side.min_kernel.1);
        let line = match &result {
            Ok(evidence) => json!({
                "kind": "source", "source": name, "ok": true,
                "evidence": evidence, "seconds": seconds, "min_kernel": min_kernel,
            }),
            Err(error) => {
                all_ok = false;
                let (stage, reason, fix) = explain(error, |load| {
                    let facts = facts.get_or_insert_with(checks::gather);
                    diagnose::diagnose(load, facts, side.min_kernel)
                });
                json!({
                    "kind": "source", "source": name, "ok": false,
                    "stage": stage, "reason": reason, "fix": fix, "seconds": seconds,
                    "min_kernel": min_kernel, "verifier_log": verifier_log_tail(error),
                })
            }
        };
        emit(&line);
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The stage, reason and fix of a failed check. A load failure is
/// explained exactly as `sonde doctor` would (`diagnosis`).
fn explain(
    error: &BoxError,
    diagnosis: impl FnOnce(&LoadError) -> diagnose::Diagnosis,
) -> (&'static str, String, Option<String>) {
    match error.downcast_ref::<CheckError>() {
        Some(CheckError::Load(load)) => {
            let d = diagnosis(load);
            ("load", d.reason, Some(d.fix))
        }
        Some(check) => (check.stage(), check.to_string(), None),
        None => ("verify", error.to_string(), None),
    }
}

/// The end of the verifier's log, when the kernel refused a program: what
/// the fix's "log below" points at (the rejection is in the last lines).
fn verifier_log_tail(error: &BoxError) -> Option<String> {
    const LINES: usize = 40;
    let Some(CheckError::Load(load)) = error.downcast_ref::<CheckError>() else {
        return None;
    };
    let log = load.verifier_log()?;
    let lines: Vec<&str> = log.lines().collect();
    Some(lines[lines.len().saturating_sub(LINES)..].join("\n"))
}

fn emit(line: &serde_json::Value) {
    // Flushed per line: in a VM the report must survive a later crash.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
