//! Stack completeness per workload (part of `cargo xtask bench profile`):
//! the share of samples whose user stack reaches the process's entry,
//! sonde's walker (its own verdict, `sonde_profile_stacks_total`) beside
//! `perf record --call-graph dwarf` (its outermost frames named as entry
//! functions), on programs built without frame pointers; plus the eBPF
//! time per sample, the time to compile and load a process's tables from
//! cold (gdb: libc + libpython + libstdc++), and the tables' kernel memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sonde_sources::profile::unwind::completeness::ENTRY_FUNCTIONS;
use sonde_sources::profile::{Collector, ProfileSourceConfig};

/// One workload: how to start it and its comm.
struct Workload {
    name: &'static str,
    comm: &'static str,
    command: Vec<String>,
}

/// The workloads, built in `dir`; each runs about `seconds`.
fn workloads(dir: &Path, seconds: u64) -> Vec<Workload> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload");
    let c = dir.join("sonde-unwind");
    let built = Command::new("gcc")
        .args(["-O2", "-fomit-frame-pointer", "-pthread", "-o"])
        .arg(&c)
        .arg(root.join("unwind.c"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(built, "gcc failed");
    let cc = dir.join("sonde-unwind-cc");
    let built = Command::new("g++")
        .args(["-O2", "-fomit-frame-pointer", "-o"])
        .arg(&cc)
        .arg(root.join("unwind_cc.cc"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(built, "g++ failed");
    let random = dir.join("random");
    let mut data = vec![0u8; 64 << 20];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&random, &data).unwrap();
    let s = seconds.to_string();
    let sh = |script: String| vec!["sh".to_string(), "-c".to_string(), script];
    vec![
        Workload {
            name: "C -O2 -fomit-frame-pointer, qsort comparator",
            comm: "sonde-unwind",
            command: vec![c.display().to_string(), "qsort".into(), s.clone()],
        },
        Workload {
            name: "C, 200-deep recursion",
            comm: "sonde-unwind",
            command: vec![c.display().to_string(), "deep".into(), s.clone()],
        },
        Workload {
            name: "C++ -O2 -fomit-frame-pointer, throwing",
            comm: "sonde-unwind-cc",
            command: vec![cc.display().to_string(), s.clone()],
        },
        Workload {
            name: "xz -9 (Debian)",
            comm: "xz",
            command: sh(format!(
                "exec timeout {seconds} /usr/bin/xz -9 -T1 -c < {} > /dev/null",
                random.display()
            )),
        },
        Workload {
            name: "python3 in gdb (libc + libpython + libstdc++)",
            comm: "gdb",
            command: sh(format!(
                "exec timeout {seconds} gdb -batch -nx -ex 'python sum(i*i for i in range(10**10))'"
            )),
        },
    ]
}

/// Samples by how their stack ends, and the walker's cost, for one run of
/// `workload` under sonde.
fn sonde(workload: &Workload, warm: Duration) -> Value {
    let config = ProfileSourceConfig {
        comms: vec![workload.comm.into()],
        ..ProfileSourceConfig::default()
    };
    let mut collector = Collector::load(&config, "bench".into(), &[]).expect("profile loads");
    let mut symbols = collector.symbols();
    let mut announced = collector.take_new_pids().unwrap();
    let mut child = Command::new(&workload.command[0])
        .args(&workload.command[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < warm {
        collector.note_new_pids(&announced.read(), &mut symbols);
        std::thread::sleep(Duration::from_millis(20));
    }
    let unwinder = collector.unwinder().expect("native unwinding on");
    unwinder.flush();
    let load_ms = unwinder.stats().load_ns.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = unwinder;
    collector.collect(&mut symbols).unwrap();
    let before = collector.completeness().totals().clone();
    let stats_before = program_ns(&collector);
    while child.try_wait().unwrap().is_none() {
        collector.note_new_pids(&announced.read(), &mut symbols);
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats_after = program_ns(&collector);
    collector.collect(&mut symbols).unwrap();
    let totals: BTreeMap<String, u64> = collector
        .completeness()
        .totals()
        .iter()
        .map(|(k, v)| (k.to_string(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let all: u64 = totals.values().sum();
    let complete = totals.get("complete").copied().unwrap_or(0);
    let stats = collector.unwinder().expect("native unwinding on").stats();
    json!({
        "samples": all,
        "complete_percent": 100.0 * complete as f64 / all.max(1) as f64,
        "outcomes": totals,
        "bpf_us_per_sample": (stats_after.0 - stats_before.0) as f64 / (stats_after.1 - stats_before.1).max(1) as f64 / 1e3,
        "table_load_ms": load_ms,
        "table_bytes": stats.used_bytes.load(Ordering::Relaxed),
        "tables": stats.tables.load(Ordering::Relaxed),
        "bpf_map_bytes": collector.profiler().map_memory_bytes(),
    })
}

/// Run time and runs of the sampling program (the walker's tail calls
/// count in its run time).
fn program_ns(collector: &Collector) -> (u64, u64) {
    collector
        .profiler()
        .program_stats()
        .iter()
        .filter(|p| p.name == "profile_cpu")
        .fold((0, 0), |(t, n), p| (t + p.run_time_ns, n + p.run_count))
}

/// The same workload under `perf record --call-graph dwarf`: the share of
/// its samples whose outermost frames name an entry function.
fn perf(workload: &Workload, dir: &Path) -> Value {
    let data = dir.join("perf-dwarf.data");
    let status = Command::new("perf")
        .args(["record", "-F", "99", "--call-graph", "dwarf", "-q", "-o"])
        .arg(&data)
        .arg("--")
        .args(&workload.command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    // perf exits with the workload's status: `timeout` ends the slower
    // workloads (xz on a loaded machine) with 124.
    assert!(
        status.success() || status.code() == Some(124),
        "perf record failed: {status}"
    );
    let script = Command::new("perf")
        .args(["script", "-F", "comm,ip,sym", "-i"])
        .arg(&data)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&script.stdout);
    let (mut all, mut complete) = (0u64, 0u64);
    for sample in text.split("\n\n") {
        let mut lines = sample.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else { continue };
        if !header.trim_start().starts_with(workload.comm) {
            continue;
        }
        let frames: Vec<&str> = lines
            .map(|l| l.split_whitespace().nth(1).unwrap_or(""))
            .map(|s| s.split('+').next().unwrap_or(s))
            .collect();
        all += 1;
        if frames.iter().rev().take(3).any(|f| ENTRY_FUNCTIONS.contains(f)) {
            complete += 1;
        }
    }
    json!({
        "samples": all,
        "complete_percent": 100.0 * complete as f64 / all.max(1) as f64,
    })
}

/// Runs every workload under sonde, then under perf; returns the table
/// (markdown) and the figures (JSON).
pub fn run(seconds: u64) -> (String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let mut out = format!(
        "### profile: stack completeness (samples whose user stack reaches `_start`/`clone3`), {seconds} s per workload\n\n\
         | workload | sonde complete | sonde outcomes | eBPF µs/sample | tables loaded (ms, cold) | table memory | perf --call-graph dwarf complete |\n\
         |---|---|---|---|---|---|---|\n"
    );
    for workload in workloads(dir.path(), seconds) {
        let ours = sonde(&workload, Duration::from_millis(800));
        let theirs = perf(&workload, dir.path());
        eprintln!("{}: sonde {ours}, perf {theirs}", workload.name);
        out.push_str(&format!(
            "| {} | {:.1} % of {} | {} | {:.1} | {:.0} | {} KiB in {} tables | {:.1} % of {} |\n",
            workload.name,
            ours["complete_percent"].as_f64().unwrap_or(0.0),
            ours["samples"],
            ours["outcomes"],
            ours["bpf_us_per_sample"].as_f64().unwrap_or(0.0),
            ours["table_load_ms"].as_f64().unwrap_or(0.0),
            ours["table_bytes"].as_u64().unwrap_or(0) / 1024,
            ours["tables"],
            theirs["complete_percent"].as_f64().unwrap_or(0.0),
            theirs["samples"],
        ));
        rows.push(json!({"workload": workload.name, "sonde": ours, "perf_dwarf": theirs}));
    }
    let map_mib = rows
        .first()
        .and_then(|r| r["sonde"]["bpf_map_bytes"].as_u64())
        .unwrap_or(0) as f64
        / (1 << 20) as f64;
    out.push_str(&format!(
        "\nBPF maps of the profile source, default options: {map_mib:.1} MiB (the maps' `memlock`; target ≤ 32 MiB).\n"
    ));
    out.push_str(
        "\neBPF µs/sample: run time of `profile_cpu` (the walker's tail calls included) per run, over \
         every sample of the machine during the workload (processes not reported are walked by frame \
         pointers, by the kernel). Tables loaded: reading the process's maps, compiling each file's \
         .eh_frame and writing the rows, from an empty cache.\n",
    );
    (out, Value::Array(rows))
}
