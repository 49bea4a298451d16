//! The profile source on language runtimes: for each workload, two busy
//! processes (both CPUs sampled inside them) profiled by the source's
//! collector in this process for `seconds`, after a warm-up:
//! - named: samples whose leaf user frame has a name (JIT code through
//!   perf maps, native code through symbols);
//! - chain: Python only, samples showing the whole Python call chain
//!   `<module>:10 → main:9 → key:5 → fib:3 …` with its lines;
//! - eBPF µs per sample: the sampling program's run time over its runs
//!   (`BPF_ENABLE_STATS`), the Python walk included where it runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use sonde_core::event::{keys, Event, Frame, FrameKind};
use sonde_sources::profile::{Collector, ProfileSourceConfig};

/// The Python workload of tests/bpf_profile_runtimes.rs.
const PY_WORKLOAD: &str = "import sys, time
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
def key(x):
    return fib(x)
def main(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sorted(range(16, 21), key=key)
main(float(sys.argv[1]))
";
const PY_CHAIN: [(&str, u32); 4] = [("<module>", 10), ("main", 9), ("key", 5), ("fib", 3)];

const JS_WORKLOAD: &str = "function sondeHotJs(n) { let s = 0; for (let i = 0; i < n; i++) { s = (s + i * i) % 1000003; } return s; }\n\
     function main() { const end = Date.now() + 1e9; let t = 0; while (Date.now() < end) t += sondeHotJs(100000); console.log(t); }\n\
     main();\n";

const JAVA_WORKLOAD: &str = "public class SondeHot {\n\
     static long sondeHotJava(long n) { long s = 0; for (long i = 0; i < n; i++) { s = (s + i * i) % 1000003; } return s; }\n\
     public static void main(String[] args) { long t = 0; while (true) t += sondeHotJava(100000); } }\n";

/// One workload's figures.
pub struct Runtime {
    pub name: String,
    pub samples: u64,
    pub named: u64,
    pub chain: Option<u64>,
    pub bpf_ns_per_sample: f64,
}

enum Kind {
    Python(PathBuf),
    Node,
    Java,
}

/// Measures every workload whose runtime is installed.
pub fn measure(seconds: u64, dir: &Path) -> Vec<Runtime> {
    let mut kinds = vec![(
        "python3.11 (Debian)".to_string(),
        Kind::Python("/usr/bin/python3.11".into()),
    )];
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for minor in ["3.8", "3.12", "3.13"] {
        let found = std::fs::read_dir(Path::new(&home).join(".pyenv/versions"))
            .ok()
            .and_then(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&format!("{minor}.")))
                    })
                    .max()
            })
            .map(|d| d.join(format!("bin/python{minor}")));
        if let Some(python) = found.filter(|p| p.is_file()) {
            kinds.push((format!("python{minor} (pyenv)"), Kind::Python(python)));
        }
    }
    kinds.push(("node --perf-basic-prof-only-functions".into(), Kind::Node));
    kinds.push((
        "java -XX:+PreserveFramePointer + jcmd Compiler.perfmap".into(),
        Kind::Java,
    ));
    kinds
        .into_iter()
        .filter_map(|(name, kind)| {
            let result = measure_one(&name, &kind, seconds, dir);
            if result.is_none() {
                eprintln!("runtimes: {name} skipped (not installed)");
            }
            result
        })
        .collect()
}

fn spawn(kind: &Kind, dir: &Path) -> Option<Child> {
    let mut command = match kind {
        Kind::Python(python) => {
            let script = dir.join("work.py");
            std::fs::write(&script, PY_WORKLOAD).ok()?;
            let mut c = Command::new(python);
            c.arg(script).arg("100000");
            c
        }
        Kind::Node => {
            let script = dir.join("hot.js");
            std::fs::write(&script, JS_WORKLOAD).ok()?;
            let mut c = Command::new("node");
            c.args(["--perf-basic-prof-only-functions", "--interpreted-frames-native-stack"])
                .arg(script);
            c
        }
        Kind::Java => {
            let source = dir.join("SondeHot.java");
            std::fs::write(&source, JAVA_WORKLOAD).ok()?;
            let mut c = Command::new("java");
            c.arg("-XX:+PreserveFramePointer").arg(source);
            c
        }
    };
    command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()
}

fn measure_one(name: &str, kind: &Kind, seconds: u64, dir: &Path) -> Option<Runtime> {
    let comm = match kind {
        Kind::Python(_) => "python*",
        Kind::Node => "node",
        Kind::Java => "java",
    };
    let config = ProfileSourceConfig {
        comms: vec![comm.into()],
        ..ProfileSourceConfig::default()
    };
    let mut collector = Collector::load(&config, "bench".into(), &[]).expect("profile loads");
    let mut symbols = collector.symbols();
    let mut announced = collector.take_new_pids().expect("new pids ring");
    let children: Vec<Child> = (0..2).filter_map(|_| spawn(kind, dir)).collect();
    if children.len() < 2 {
        children.into_iter().for_each(stop);
        return None;
    }
    let mut wait = |collector: &mut Collector, symbols: &mut _, how_long: Duration| {
        let end = Instant::now() + how_long;
        while Instant::now() < end {
            collector.note_new_pids(&announced.read(), symbols);
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let warmup = if matches!(kind, Kind::Java) { 5 } else { 2 };
    wait(&mut collector, &mut symbols, Duration::from_secs(warmup));
    if matches!(kind, Kind::Java) {
        for child in &children {
            let _ = Command::new("jcmd")
                .arg(child.id().to_string())
                .arg("Compiler.perfmap")
                .stdout(Stdio::null())
                .status();
        }
    }
    collector.collect(&mut symbols).ok()?;
    let before = program_stats(&collector);
    wait(&mut collector, &mut symbols, Duration::from_secs(seconds));
    let after = program_stats(&collector);
    let events = collector.collect(&mut symbols).ok()?;
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    children.into_iter().for_each(stop);
    for pid in &pids {
        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    }
    let (mut samples, mut named, mut chain) = (0, 0, 0);
    for event in &events {
        let Event::Profile(p) = event else { continue };
        let pid = p.attributes.get(keys::PID).and_then(|v| v.as_int()).unwrap_or(-1);
        if !pids.iter().any(|p| i64::from(*p) == pid) {
            continue;
        }
        for sample in &p.samples {
            samples += sample.count;
            if sample
                .frames
                .iter()
                .find(|f| f.kind != FrameKind::Kernel)
                .is_some_and(|f| f.kind != FrameKind::Unknown)
            {
                named += sample.count;
            }
            if python_chain(&sample.frames) {
                chain += sample.count;
            }
        }
    }
    let (runs, ns) = (after.0 - before.0, after.1 - before.1);
    Some(Runtime {
        name: name.to_string(),
        samples,
        named,
        chain: matches!(kind, Kind::Python(_)).then_some(chain),
        bpf_ns_per_sample: ns as f64 / runs.max(1) as f64,
    })
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// (runs, ns) of the sampling program.
fn program_stats(collector: &Collector) -> (u64, u64) {
    collector
        .profiler()
        .program_stats()
        .into_iter()
        .find(|s| s.name == sonde_sources::profile::bpf::PROGRAM)
        .map_or((0, 0), |s| (s.run_count, s.run_time_ns))
}

fn python_chain(frames: &[Frame]) -> bool {
    let python: Vec<&Frame> = frames.iter().rev().filter(|f| f.kind == FrameKind::Python).collect();
    python.len() >= PY_CHAIN.len()
        && PY_CHAIN
            .iter()
            .zip(&python)
            .all(|((name, line), f)| f.function.as_str() == *name && f.line == Some(*line))
        && python[PY_CHAIN.len()..].iter().all(|f| f.function.as_str() == "fib")
}

/// The Markdown table.
pub fn render(results: &[Runtime], seconds: u64) -> String {
    let mut out = format!(
        "\n### profile: language runtimes\n\n\
         Two busy processes per workload, sampled {seconds} s after warm-up by the source's collector. \
         Named: the leaf user frame has a name. Python chain: `<module>:10 → main:9 → key:5 → fib:3 …` \
         with lines (fib under `sorted(key=…)`). eBPF µs/sample: the sampling program's run time per run, \
         the Python walk included.\n\n\
         | workload | samples | named % | Python chain % | eBPF µs/sample |\n|---|---:|---:|---:|---:|\n"
    );
    for r in results {
        let pct = |n: u64| n as f64 * 100.0 / r.samples.max(1) as f64;
        let chain = r.chain.map_or("—".to_string(), |c| format!("{:.1}", pct(c)));
        out.push_str(&format!(
            "| {} | {} | {:.1} | {chain} | {:.1} |\n",
            r.name,
            r.samples,
            pct(r.named),
            r.bpf_ns_per_sample / 1000.0
        ));
    }
    out
}

/// The JSON figures.
pub fn to_json(results: &[Runtime]) -> serde_json::Value {
    json!(results
        .iter()
        .map(|r| json!({
            "workload": r.name,
            "samples": r.samples,
            "named": r.named,
            "python_chain": r.chain,
            "bpf_ns_per_sample": r.bpf_ns_per_sample,
        }))
        .collect::<Vec<_>>())
}
