//! Installs what building and testing need on Debian, as root.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Packages needed to build sonde: clang and libbpf's headers compile the
/// eBPF programs.
pub const BUILD_PACKAGES: &[&str] = &["clang", "llvm", "libbpf-dev"];

/// Packages the tests use besides the build ones: reference tools for the
/// eBPF sources (bpftrace, perf), capsh to drop capabilities, losetup for
/// test block devices, Prometheus' promtool for the exposition format,
/// nginx and wrk for the network benchmark.
pub const TEST_PACKAGES: &[&str] = &[
    "clang",
    "llvm",
    "libbpf-dev",
    "bpftrace",
    "linux-perf",
    "libcap2-bin",
    "util-linux",
    "prometheus",
    "procps",
    "nginx",
    "wrk",
];

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        .unwrap_or(false)
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Installs the missing ones of `packages` with apt-get (Debian, root).
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let command = format!("apt-get install -y --no-install-recommends {}", missing.join(" "));
    if !is_root() || Command::new("apt-get").arg("--version").output().is_err() {
        bail!(
            "missing Debian packages: {}; install them as root: {command}",
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("apt-get install")?;
    if !status.success() {
        bail!("`{command}` failed");
    }
    Ok(())
}

/// Mounts tracefs and bpffs when they are missing (root only; the agent
/// does the same itself, this just makes tests independent of the order).
pub fn prepare_kernel_mounts() {
    if !is_root() {
        return;
    }
    for (fs, target) in [("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf")] {
        let mounted = std::fs::read_to_string("/proc/mounts")
            .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(target)))
            .unwrap_or(true);
        if !mounted {
            let _ = Command::new("mount").args(["-t", fs, fs, target]).status();
        }
    }
}
