//! `cargo xtask`: the project's own commands.
//!
//! - `cargo xtask run`   installs what is missing, builds, runs the default pipeline;
//! - `cargo xtask test`  installs what tests need and runs every test;
//! - `cargo xtask bench` runs the benchmarks and writes their reports;
//! - `cargo xtask kernels` runs every eBPF source on other kernels, under qemu.

mod bench;
mod kernels;
mod setup;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "sonde's development commands")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install build dependencies (Debian, as root), build sonde in release
    /// mode and run it. Arguments after `--` go to `sonde run`
    /// (e.g. `cargo xtask run -- --config configs/examples/demo.hcl`).
    Run {
        /// Arguments for `sonde run`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Install what the tests need (Debian, as root), then run every test of
    /// the workspace. Arguments after `--` go to `cargo test`.
    Test {
        /// Arguments for `cargo test`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run benchmarks (all, or those named: pipeline, prometheus, otlp,
    /// enrich, disk, net, protocols, databases, profile, energy, agent) and record them in BENCHMARKS.md
    /// and BENCHMARKS.json; raw reports in target/bench.
    Bench {
        /// Benchmarks to run. Default: all (about half an hour, as root).
        names: Vec<String>,
        /// The regression check instead: short runs of the CPU-only
        /// benchmarks, failing only when a figure's ratio to its same-run
        /// baseline is more than 25 % worse than in BENCHMARKS.json.
        #[arg(long, conflicts_with = "names")]
        check: bool,
        /// With --check: measure and write the check's references (the
        /// `check` part of BENCHMARKS.json) instead of comparing.
        #[arg(long, requires = "check")]
        record: bool,
    },
    /// The kernel matrix: boot each kernel (Debian's 5.10, 6.1, 6.12 and
    /// newest) under qemu and check that every eBPF source loads and sees
    /// a workload there; prints kernel × source, updates the README's
    /// support matrix (after a run of every kernel). Debian, as root.
    Kernels {
        /// Only these kernels (5.10, 6.1, 6.12, 7.x). Default: all.
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
        /// Only these sources (default: every eBPF source).
        #[arg(long = "source", value_name = "TYPE")]
        sources: Vec<String>,
        /// The sonde binary to test. Default: build it (debug).
        #[arg(long)]
        sonde: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Task::Run { args } => {
            setup::ensure_packages(setup::BUILD_PACKAGES)?;
            cargo(&["build", "--release", "--package", "sonde"])?;
            if !setup::is_root() {
                eprintln!("xtask: not running as root: eBPF sources will not load (see `sonde doctor`)");
            }
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            let binary = format!("{target}/release/sonde");
            let status = Command::new(&binary)
                .arg("run")
                .args(&args)
                .status()
                .with_context(|| format!("cannot start {binary}"))?;
            if !status.success() {
                bail!("sonde exited with {status}");
            }
            Ok(())
        }
        Task::Test { args } => {
            setup::ensure_packages(setup::TEST_PACKAGES)?;
            setup::ensure_python_venv()?;
            setup::ensure_python_tools()?;
            setup::prepare_kernel_mounts();
            let mut test = vec!["test", "--workspace"];
            test.extend(args.iter().map(String::as_str));
            cargo(&test)
        }
        Task::Bench {
            check: true, record, ..
        } => bench::check(record),
        Task::Bench { names, .. } => bench::run(&names),
        Task::Kernels {
            kernels,
            sources,
            sonde,
        } => kernels::run(&kernels, &sources, sonde),
    }
}

/// Runs cargo with `args`, failing on a non-zero exit.
pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
