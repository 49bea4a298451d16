//! `sonde doctor`: can this node run sonde's eBPF sources, and if not,
//! exactly what is missing and how to fix it.
//!
//! It reports the kernel, BTF, tracefs/debugfs/bpffs, cgroup v2, the
//! effective capabilities, `perf_event_paranoid`, which attach types work
//! (each tried for real), and then, for every source type (or every source
//! of `--config`), a real load-and-attach trial of its programs and the
//! capabilities it declares against those this process has (a missing one,
//! CAP_NET_ADMIN for net_flows say, is named as such, not blamed on
//! seccomp or an LSM). Which
//! source types are eBPF-based, and how to try them, each says when it
//! registers (its [`EbpfSide`](sonde_core::registry::EbpfSide)). Exits 1
//! when a checked source cannot run.

pub(crate) mod checks;
pub(crate) mod diagnose;
pub mod process;
mod render;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::AnyConfig;
use sonde_core::{ComponentKind, Registry};

use self::diagnose::Diagnosis;

/// The outcome for one source (or source type).
#[derive(Clone, Debug)]
pub struct SourceOutcome {
    /// The source's id, with `--config`.
    pub id: Option<String>,
    /// Its type.
    pub type_name: &'static str,
    /// What it attaches to; empty for sources without eBPF.
    pub attach_points: &'static [&'static str],
    /// Whether it runs eBPF programs.
    pub ebpf: bool,
    /// The capabilities it declares it needs.
    pub needs: CapabilitySet,
    /// Those of `needs` this process does not have.
    pub missing: CapabilitySet,
    /// Ok, or why not.
    pub result: Result<(), Diagnosis>,
}

/// A source to check: its id (with `--config`), type and needed capabilities.
struct Target {
    id: Option<String>,
    type_name: &'static str,
    needs: CapabilitySet,
}

/// Checks this node (and `config`'s sources, if given); prints the report.
pub fn run(config: Option<&Path>, json: bool, registry: &Registry) -> anyhow::Result<ExitCode> {
    let targets: Vec<Target> = match config {
        Some(path) => match sonde_core::config::load_file(path, registry) {
            Ok(loaded) => loaded
                .config
                .components
                .iter()
                .filter_map(|c| match &c.options {
                    AnyConfig::Source(options) => Some(Target {
                        id: Some(c.id.to_string()),
                        type_name: c.type_name,
                        needs: options.capabilities(),
                    }),
                    _ => None,
                })
                .collect(),
            Err(error) => {
                eprintln!("{error}");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => registry
            .iter()
            .filter(|t| t.kind == ComponentKind::Source)
            .map(|t| Target {
                id: None,
                type_name: t.name,
                // What the type needs with its defaults.
                needs: match t.parse(serde_json::json!({})) {
                    Ok(AnyConfig::Source(options)) => options.capabilities(),
                    _ => CapabilitySet::EMPTY,
                },
            })
            .collect(),
    };

    let facts = checks::gather();
    let outcomes = trial_sources(registry, &targets, &facts);
    let ok = outcomes.iter().all(|o| o.result.is_ok());
    let report = if json {
        serde_json::to_string_pretty(&render::json(&facts, &outcomes, config, ok))? + "\n"
    } else {
        render::text(&facts, &outcomes, config)
    };
    // A closed pipe (`sonde doctor | head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(report.as_bytes());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The capabilities this process has, as the components name them.
/// Before 5.8, CAP_SYS_ADMIN stands for CAP_BPF and CAP_PERFMON.
fn held(facts: &checks::Facts) -> CapabilitySet {
    let mut has = CapabilitySet::from_bits(facts.caps.map_or(0, |c| c.0));
    if facts.can_bpf() {
        has = has.union(CapabilitySet::of(&[Capability::BPF]));
    }
    if facts.can_perfmon() {
        has = has.union(CapabilitySet::of(&[Capability::PERFMON]));
    }
    has
}

/// Loads and attaches each eBPF source type once, for real, and compares
/// the capabilities each source needs with those this process has.
fn trial_sources(registry: &Registry, targets: &[Target], facts: &checks::Facts) -> Vec<SourceOutcome> {
    let has = held(facts);
    let mut tried: HashMap<&'static str, Result<(), sonde_core::BoxError>> = HashMap::new();
    targets
        .iter()
        .map(|target| {
            let missing = target.needs.difference(has);
            let side = registry
                .get(ComponentKind::Source, target.type_name)
                .and_then(|t| t.ebpf);
            let result = match side {
                Some(side) => match tried.entry(target.type_name).or_insert_with(|| (side.trial)()) {
                    Ok(()) => diagnose::missing_capabilities(target.type_name, target.needs, missing, facts),
                    Err(error) => Err(diagnose::diagnose_trial(error, facts, side.min_kernel, missing)),
                },
                None => diagnose::missing_capabilities(target.type_name, target.needs, missing, facts),
            };
            SourceOutcome {
                id: target.id.clone(),
                type_name: target.type_name,
                attach_points: side.map_or(&[], |s| s.attach_points),
                ebpf: side.is_some(),
                needs: target.needs,
                missing,
                result,
            }
        })
        .collect()
}
