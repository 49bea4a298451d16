//! `sonde doctor`: can this node run sonde's eBPF sources, and if not,
//! exactly what is missing and how to fix it.
//!
//! It reports the kernel, BTF, tracefs/debugfs/bpffs, cgroup v2, the
//! effective capabilities, `perf_event_paranoid`, which attach types work
//! (each tried for real), and then, for every source type (or every source
//! of `--config`), a real load-and-attach trial of its programs. Which
//! source types are eBPF-based, and how to try them, each says when it
//! registers (its [`EbpfSide`](sonde_core::registry::EbpfSide)). Exits 1
//! when a checked source cannot run.

pub(crate) mod checks;
pub(crate) mod diagnose;
mod render;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

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
    /// Ok, or why not.
    pub result: Result<(), Diagnosis>,
}

/// Checks this node (and `config`'s sources, if given); prints the report.
pub fn run(config: Option<&Path>, json: bool, registry: &Registry) -> anyhow::Result<ExitCode> {
    let targets: Vec<(Option<String>, &'static str)> = match config {
        Some(path) => match sonde_core::config::load_file(path, registry) {
            Ok(loaded) => loaded
                .config
                .components
                .iter()
                .filter(|c| c.kind == ComponentKind::Source)
                .map(|c| (Some(c.id.to_string()), c.type_name))
                .collect(),
            Err(error) => {
                eprintln!("{error}");
                return Ok(ExitCode::FAILURE);
            }
        },
        None => registry.names(ComponentKind::Source).map(|name| (None, name)).collect(),
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

/// Loads and attaches each eBPF source type once, for real.
fn trial_sources(
    registry: &Registry,
    targets: &[(Option<String>, &'static str)],
    facts: &checks::Facts,
) -> Vec<SourceOutcome> {
    let mut tried: HashMap<&'static str, Result<(), Diagnosis>> = HashMap::new();
    targets
        .iter()
        .map(
            |(id, type_name)| match registry.get(ComponentKind::Source, type_name).and_then(|t| t.ebpf) {
                Some(source) => {
                    let result = tried
                        .entry(type_name)
                        .or_insert_with(|| {
                            (source.trial)().map_err(|error| diagnose::diagnose_trial(&error, facts, source.min_kernel))
                        })
                        .clone();
                    SourceOutcome {
                        id: id.clone(),
                        type_name,
                        attach_points: source.attach_points,
                        ebpf: true,
                        result,
                    }
                }
                None => SourceOutcome {
                    id: id.clone(),
                    type_name,
                    attach_points: &[],
                    ebpf: false,
                    result: Ok(()),
                },
            },
        )
        .collect()
}
