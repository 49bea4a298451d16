//! The report, as text for people and JSON for tools.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::checks::{Facts, Status};
use super::SourceOutcome;

/// The report as aligned text.
pub fn text(facts: &Facts, outcomes: &[SourceOutcome], config: Option<&Path>) -> String {
    let mut out = String::from("node\n");
    for check in &facts.checks {
        let _ = writeln!(out, "  {:<20} {:<5} {}", check.name, check.status.as_str(), check.value);
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "  {:<20}       fix: {fix}", "");
        }
    }
    out.push_str("attach types (tried for real)\n");
    for (feature, error) in &facts.features {
        match error {
            None => {
                let _ = writeln!(out, "  {:<20} ok", feature.name());
            }
            Some(error) => {
                let _ = writeln!(out, "  {:<20} no    {error}", feature.name());
            }
        }
    }
    match config {
        Some(path) => {
            let _ = writeln!(out, "sources of {} (loaded and attached for real)", path.display());
        }
        None => out.push_str("source types (loaded and attached for real)\n"),
    }
    for outcome in outcomes {
        let label = match &outcome.id {
            Some(id) => format!("{id} ({})", outcome.type_name),
            None => outcome.type_name.to_string(),
        };
        match (&outcome.result, outcome.ebpf) {
            (Ok(()), true) => {
                let _ = writeln!(out, "  {label:<20} ok");
            }
            (Ok(()), false) => {
                let _ = writeln!(out, "  {label:<20} ok    no eBPF, nothing to check");
            }
            (Err(diagnosis), _) => {
                let _ = writeln!(out, "  {label:<20} FAIL  {}", diagnosis.reason);
                let _ = writeln!(out, "  {:<20}       fix: {}", "", diagnosis.fix);
                if let Some(log) = &diagnosis.verifier_log {
                    for line in log.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
                        let _ = writeln!(out, "  {:<20}       | {line}", "");
                    }
                }
            }
        }
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed == 0 {
        out.push_str("every source can run on this node\n");
    } else {
        let _ = writeln!(out, "{failed} source(s) cannot run on this node");
    }
    out
}

/// The report as a JSON value.
pub fn json(facts: &Facts, outcomes: &[SourceOutcome], config: Option<&Path>, ok: bool) -> Value {
    let checks: serde_json::Map<String, Value> = facts
        .checks
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                json!({ "value": c.value, "ok": c.status != Status::Fail, "status": c.status.as_str(), "fix": c.fix }),
            )
        })
        .collect();
    let capabilities: serde_json::Map<String, Value> = sonde_ebpf::caps::Capability::ALL
        .iter()
        .map(|c| (c.name().to_string(), json!(facts.has(*c))))
        .collect();
    let features: Vec<Value> = facts
        .features
        .iter()
        .map(|(f, error)| json!({ "name": f.name(), "ok": error.is_none(), "error": error, "min_kernel": f.min_kernel() }))
        .collect();
    let sources: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let (reason, fix, log) = match &o.result {
                Ok(()) => (None, None, None),
                Err(d) => (Some(&d.reason), Some(&d.fix), d.verifier_log.as_ref()),
            };
            let names =
                |set: sonde_core::privileges::CapabilitySet| -> Vec<String> { set.iter().map(|c| c.name()).collect() };
            json!({
                "id": o.id,
                "type": o.type_name,
                "ebpf": o.ebpf,
                "needs_capabilities": names(o.needs),
                "missing_capabilities": names(o.missing),
                "attach_points": o.attach_points,
                "ok": o.result.is_ok(),
                "reason": reason,
                "fix": fix,
                "verifier_log": log,
            })
        })
        .collect();
    json!({
        "ok": ok,
        "config": config.map(|p| p.display().to_string()),
        "kernel": { "release": facts.release, "version": facts.version.map(|(a, b)| format!("{a}.{b}")) },
        "perf_event_paranoid": facts.paranoid,
        "capabilities": capabilities,
        "checks": checks,
        "features": features,
        "sources": sources,
    })
}
