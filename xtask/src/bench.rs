//! `cargo xtask bench [NAME…]`: runs benchmarks side by side with their
//! baselines and collects their reports in target/bench.

use std::path::Path;

use anyhow::{bail, Result};

/// Every benchmark, in the order they run.
pub const BENCHMARKS: &[&str] = &["pipeline", "disk", "prometheus", "otlp", "enrich", "profile", "net"];

/// Runs `names` (all when empty).
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
    std::fs::create_dir_all(out)?;
    let mut report = String::new();
    for name in selected {
        eprintln!("xtask: benchmark {name}");
        if name == "profile" {
            // The peers it compares with, and the compiler of its workload.
            crate::setup::ensure_packages(crate::setup::PROFILE_BENCH_PACKAGES)?;
        }
        if name == "net" {
            crate::setup::ensure_packages(crate::setup::NET_BENCH_PACKAGES)?;
        }
        // Every benchmark is a `benches/NAME.rs` target of the sonde package.
        let table = bench(name, out)?;
        report.push_str(&table);
        report.push('\n');
    }
    std::fs::write(out.join("report.md"), &report)?;
    println!("{report}");
    eprintln!("xtask: reports in target/bench/");
    Ok(())
}

/// Runs `benches/NAME.rs` (harness = false), which writes `NAME.md` to `out`.
fn bench(name: &str, out: &Path) -> Result<String> {
    crate::cargo(&[
        "bench",
        "--package",
        "sonde",
        "--bench",
        name,
        "--",
        "--out",
        &out.display().to_string(),
    ])?;
    Ok(std::fs::read_to_string(out.join(format!("{name}.md")))?)
}
