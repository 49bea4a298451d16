//! `cargo xtask bench [NAME…]`: runs benchmarks side by side with their
//! baselines, and keeps their results in BENCHMARKS.md and BENCHMARKS.json
//! at the workspace root (one section per benchmark, each with the
//! machine, kernel, date and command that produced it).
//!
//! `cargo xtask bench --check` is the regression check: it runs the quick,
//! CPU-only benchmarks in a short mode and fails only when a gated figure
//! is more than [`CHECK_TOLERANCE`] worse than its committed reference.
//! Only figures measured against a baseline in the same run are gated, by
//! that ratio, which a noisy machine mostly cancels out of: on this 2-core
//! VM at load 8, absolute ns/event (even thread CPU time) moved 39–69 %
//! while the ratios stayed within 23 %. Run it on an otherwise idle
//! machine, as CI does.
//!
//! The check builds with the `bench-check` profile (no LTO, more codegen
//! units: a few minutes on a fresh CI machine instead of a quarter of an
//! hour), so it compares with references measured with that profile too:
//! the `check` part of BENCHMARKS.json, which `cargo xtask bench --check
//! --record` writes. Ratios of the LTO build (the `benchmarks` part) are
//! not comparable: inlining across crates moves both sides differently.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Every benchmark, in the order they run.
pub const BENCHMARKS: &[&str] = &[
    "pipeline",
    "prometheus",
    "otlp",
    "enrich",
    "engine",
    "disk",
    "buffer",
    "net",
    "protocols",
    "databases",
    "file_io",
    "file_access",
    "connections",
    "process",
    "profile",
    "energy",
    "sched",
    "operate",
    "agent",
];

/// What the regression check runs, with its short-mode arguments.
const CHECKED: &[(&str, &[&str])] = &[
    ("pipeline", &["--events", "500000", "--runs", "5"]),
    ("prometheus", &["--events", "300000", "--runs", "5"]),
    ("otlp", &["--events", "100000", "--runs", "5"]),
    ("enrich", &["--batches", "50", "--runs", "5"]),
    ("engine", &["--rounds", "500", "--runs", "5"]),
];

/// How much worse a gated figure may get before `--check` fails.
pub const CHECK_TOLERANCE: f64 = 0.25;

/// The cargo profile the regression check builds with (Cargo.toml).
const CHECK_PROFILE: &str = "bench-check";

const RESULTS_JSON: &str = "BENCHMARKS.json";
const RESULTS_MD: &str = "BENCHMARKS.md";

/// Runs `names` (all when empty) and records them in BENCHMARKS.{md,json}.
pub fn run(names: &[String]) -> Result<()> {
    let selected: Vec<&str> = if names.is_empty() {
        BENCHMARKS.to_vec()
    } else {
        for name in names {
            if !BENCHMARKS.contains(&name.as_str()) {
                bail!("no benchmark `{name}`; there are: {}", BENCHMARKS.join(", "));
            }
        }
        names.iter().map(String::as_str).collect()
    };
    let out = Path::new("target/bench");
    let machine = Machine::detect();
    for name in selected {
        eprintln!("xtask: benchmark {name}");
        ensure_peers(name)?;
        bench(name, out, &[], None)?;
        let entry = entry(name, out, &machine)?;
        // Read again and written after each benchmark: a long run that
        // fails late keeps what it measured, and entries another run (or a
        // merge) wrote meanwhile are kept, not overwritten with the copy
        // read when this run started.
        let mut results = read_results()?;
        results["benchmarks"][name] = entry;
        write_results(&results)?;
    }
    eprintln!("xtask: results in {RESULTS_MD} and {RESULTS_JSON}; raw reports in target/bench/");
    Ok(())
}

/// The regression check: short runs of [`CHECKED`] against the references
/// in BENCHMARKS.json's `check` part; with `record`, writes them instead.
pub fn check(record: bool) -> Result<()> {
    let committed = read_results()?;
    let out = Path::new("target/bench/check");
    let machine = Machine::detect();
    let mut failures = Vec::new();
    let mut recorded = Vec::new();
    println!("| benchmark | figure | committed | now | change | |\n|---|---|---|---|---|---|");
    for (name, args) in CHECKED {
        bench(name, out, args, Some(CHECK_PROFILE))?;
        let now = entry(name, out, &machine)?;
        if record {
            recorded.push((*name, now));
            continue;
        }
        let Some(before) = committed["check"].get(*name) else {
            println!("| {name} | (no reference in {RESULTS_JSON}: `cargo xtask bench --check --record`) | | | | |");
            continue;
        };
        if before["machine"]["kind"] != now["machine"]["kind"] {
            println!("| {name} | (measured on another machine kind: ratios compared all the same) | | | | |");
        }
        for figure in now["figures"].as_array().into_iter().flatten() {
            if figure["gated"] != true {
                continue;
            }
            let old = before["figures"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["name"] == figure["name"]);
            let Some(old) = old else { continue };
            let label = "× baseline";
            let key = "ratio_to_baseline";
            let (Some(was), Some(is)) = (old[key].as_f64(), figure[key].as_f64()) else {
                continue;
            };
            let change = is / was - 1.0;
            let failed = change > CHECK_TOLERANCE;
            println!(
                "| {name} | {} | {was:.3} {label} | {is:.3} {label} | {:+.1} % | {} |",
                figure["name"].as_str().unwrap_or(""),
                change * 100.0,
                if failed { "✗" } else { "✓" }
            );
            if failed {
                failures.push(format!("{name}: {} {:+.1} %", figure["name"], change * 100.0));
            }
        }
    }
    if record {
        // Read again: a benchmark run meanwhile keeps its entry.
        let mut results = read_results()?;
        for (name, entry) in recorded {
            results["check"][name] = json!({
                "machine": entry["machine"],
                "kernel": entry["kernel"],
                "date": entry["date"],
                "command": "cargo xtask bench --check --record",
                "figures": entry["figures"],
            });
        }
        write_results(&results)?;
        eprintln!("xtask: check references written to {RESULTS_JSON} (profile {CHECK_PROFILE})");
        return Ok(());
    }
    if !failures.is_empty() {
        bail!(
            "performance regression beyond {:.0} %: {}",
            CHECK_TOLERANCE * 100.0,
            failures.join("; ")
        );
    }
    eprintln!(
        "xtask: no gated figure is more than {:.0} % worse",
        CHECK_TOLERANCE * 100.0
    );
    Ok(())
}

/// The peer tools and workloads a benchmark needs.
fn ensure_peers(name: &str) -> Result<()> {
    match name {
        "profile" => crate::setup::ensure_packages(crate::setup::PROFILE_BENCH_PACKAGES),
        "net" => crate::setup::ensure_packages(crate::setup::NET_BENCH_PACKAGES),
        "agent" => crate::setup::ensure_packages(crate::setup::AGENT_BENCH_PACKAGES),
        "protocols" => crate::setup::ensure_packages(crate::setup::PROTOCOLS_BENCH_PACKAGES),
        "databases" => crate::setup::ensure_packages(&["postgresql", "redis-server", "dnsmasq-base", "openssl"]),
        "disk" => crate::setup::ensure_packages(&["bpftrace", "util-linux"]),
        "energy" | "sched" => crate::setup::ensure_packages(&["bpftrace"]),
        "operate" => crate::setup::ensure_packages(&["tmux"]),
        _ => Ok(()),
    }
}

/// Runs `benches/NAME.rs` (harness = false), which writes `NAME.md` (and,
/// for most, `NAME.json`) to `out`; built with `profile` (default: cargo's
/// `bench`).
fn bench(name: &str, out: &Path, extra: &[&str], profile: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(out)?;
    let out = out.display().to_string();
    let mut args = vec!["bench", "--package", "sonde", "--bench", name];
    if let Some(profile) = profile {
        args.extend(["--profile", profile]);
    }
    args.extend(["--", "--out", &out]);
    args.extend_from_slice(extra);
    crate::cargo(&args)
}

/// One benchmark's entry in BENCHMARKS.json, from its reports in `out`.
fn entry(name: &str, out: &Path, machine: &Machine) -> Result<Value> {
    let markdown = std::fs::read_to_string(out.join(format!("{name}.md")))
        .with_context(|| format!("benchmark {name} wrote no {name}.md"))?;
    let report: Value = std::fs::read_to_string(out.join(format!("{name}.json")))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    let (figures, details) = match report.get("figures") {
        Some(figures) => (figures.clone(), report["details"].clone()),
        None => (json!([]), report),
    };
    Ok(json!({
        "machine": machine.to_json(),
        "kernel": machine.kernel,
        "date": machine.date,
        "command": format!("cargo xtask bench {name}"),
        "markdown": markdown,
        "figures": figures,
        "details": details,
    }))
}

fn read_results() -> Result<Value> {
    match std::fs::read_to_string(RESULTS_JSON) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("{RESULTS_JSON} is not valid JSON")),
        Err(_) => Ok(json!({ "benchmarks": {} })),
    }
}

/// BENCHMARKS.json, and BENCHMARKS.md rendered from it.
fn write_results(results: &Value) -> Result<()> {
    std::fs::write(RESULTS_JSON, serde_json::to_string_pretty(results)? + "\n")?;
    let mut md = String::from(
        "# sonde benchmarks\n\n\
         Written by `cargo xtask bench` (do not edit): every figure is measured side by side with its \
         baseline in the same run, repeated and interleaved, as min / median / max, so that noise on \
         a shared machine is visible. `cargo xtask bench NAME` reruns one section; \
         `cargo xtask bench --check` compares short runs with BENCHMARKS.json.\n",
    );
    for name in BENCHMARKS {
        let Some(entry) = results["benchmarks"].get(*name) else {
            continue;
        };
        md.push_str(&format!(
            "\n## {name}\n\n`{}` on {} ({} CPUs, {} GiB), Linux {}, {}.\n\n{}\n",
            entry["command"].as_str().unwrap_or(""),
            entry["machine"]["cpu"].as_str().unwrap_or("?"),
            entry["machine"]["cpus"],
            entry["machine"]["memory_gib"],
            entry["kernel"].as_str().unwrap_or("?"),
            entry["date"].as_str().unwrap_or("?"),
            entry["markdown"].as_str().unwrap_or("").trim_end()
        ));
    }
    std::fs::write(RESULTS_MD, md)?;
    Ok(())
}

/// The machine a figure was measured on.
struct Machine {
    cpu: String,
    cpus: usize,
    memory_gib: u64,
    kernel: String,
    date: String,
}

impl Machine {
    fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|v| v.split_once(':'))
            .map_or_else(|| "unknown CPU".to_string(), |(_, v)| v.trim().to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let output = |cmd: &str, args: &[&str]| {
            Command::new(cmd)
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (memory_kib as f64 / 1024.0 / 1024.0).round() as u64,
            kernel: output("uname", &["-r"]),
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "cpu": self.cpu,
            "cpus": self.cpus,
            "memory_gib": self.memory_gib,
            // What "the same machine kind" means to the regression check.
            "kind": format!("{} × {}", self.cpu, self.cpus),
        })
    }
}
