//! `cargo xtask bench [NAME…]`: runs benchmarks side by side with their
//! baselines and collects their reports in target/bench.

use std::path::Path;

use anyhow::{bail, Result};

/// Every benchmark, in the order they run.
pub const BENCHMARKS: &[&str] = &["pipeline", "net"];

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
        let table = match name {
            "pipeline" => pipeline(out)?,
            "net" => crate::bench_net::run(out)?,
            _ => unreachable!("checked above"),
        };
        report.push_str(&table);
        report.push('\n');
    }
    std::fs::write(out.join("report.md"), &report)?;
    println!("{report}");
    eprintln!("xtask: reports in target/bench/");
    Ok(())
}

fn pipeline(out: &Path) -> Result<String> {
    crate::cargo(&[
        "bench",
        "--package",
        "sonde",
        "--bench",
        "pipeline",
        "--",
        "--out",
        &out.display().to_string(),
    ])?;
    Ok(std::fs::read_to_string(out.join("pipeline.md"))?)
}
