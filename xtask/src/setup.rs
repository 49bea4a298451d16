//! Installs what building and testing need on Debian, as root.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Packages needed to build sonde: clang and libbpf's headers compile the
/// eBPF programs.
pub const BUILD_PACKAGES: &[&str] = &["clang", "llvm", "libbpf-dev"];

/// Packages the tests use besides the build ones: reference tools for the
/// eBPF sources (bpftrace, perf), capsh to drop capabilities, losetup for
/// test block devices, Prometheus' promtool for the exposition format,
/// python3-venv for the Python tools of [`PYTHON_TOOLS`]; real peers for the
/// protocol tests (nginx with OpenSSL, wrk, curl, openssl for certificates);
/// for the profile
/// tests gcc (a workload built with frame pointers) and an independent pprof
/// decoder: pprof's own profile.proto (shipped in
/// golang-github-google-pprof-dev), protoc, and Python's protobuf runtime.
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
    "python3-venv",
    "gcc",
    "protobuf-compiler",
    "python3-protobuf",
    "golang-github-google-pprof-dev",
    "nginx",
    "wrk",
    "curl",
    "openssl",
    // Protocol tracing II's real servers and clients: psql and pgbench,
    // mariadb and mysqlslap, redis-cli and redis-benchmark, dig; dnsmasq's
    // binary only (dnsmasq-base: no system service on port 53).
    "postgresql",
    "mariadb-server",
    "mariadb-client",
    "redis-server",
    "redis-tools",
    "dnsmasq-base",
    "bind9-dnsutils",
    // Protocol tracing III: Go programs built offline (crypto/tls probes),
    // and Go gRPC from Debian's packaged sources (GOPATH mode).
    "golang-go",
    "golang-google-grpc-dev",
    // Protocol tracing III: nghttpd and h2load (HTTP/2 over h2c and TLS),
    // Node's https with its own OpenSSL (nodejs is below; grpcio is in
    // VENV_PACKAGES).
    "nghttp2-server",
    "nghttp2-client",
    // The disk queue-depth test's load (fio's own iostat-style figures).
    "fio",
    // The profile source's separate debug info (libc's static functions,
    // by build id under /usr/lib/debug), and its JIT and Python workloads:
    // Node and a JDK writing perf maps, Debian's own python3.
    "libc6-dbg",
    "nodejs",
    "default-jdk-headless",
    "python3",
    // `sonde top` in a real terminal, and the graph page in a real browser
    // (tests/operate).
    "tmux",
    "chromium",
    // The profile source's stack walker tests (tests/bpf_unwind.rs): a C++
    // program built without frame pointers, and Debian's own xz.
    "g++",
    "xz-utils",
];

/// What `cargo xtask kernels` needs: qemu (and its virtiofsd) to boot the
/// kernels, kmod's modinfo, xz and zstd to pick and unpack their modules,
/// busybox-static and cpio for the initramfs, util-linux's losetup and
/// udev's udevadm for the guest's loop device, Debian's archive keys to
/// verify the downloaded images.
pub const KERNEL_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "kmod",
    "xz-utils",
    "zstd",
    "busybox-static",
    "cpio",
    "util-linux",
    "udev",
    "debian-archive-keyring",
    // The protocols check's Go HTTPS program, built on the host.
    "golang-go",
];

/// Python packages the tests use, pinned, installed into [`TOOLS_VENV`]:
/// kubernetes-validate checks the Kubernetes manifests against the API's
/// OpenAPI schemas, which it ships (no download at test time); xxhash (the
/// reference C xxh3) computes the `sample` transform's keep decisions
/// independently of the Rust crate it uses.
pub const PYTHON_TOOLS: &[&str] = &["kubernetes-validate==1.37.0", "xxhash==4.1.0"];

/// The virtual environment of [`PYTHON_TOOLS`], relative to the workspace
/// (tests find it there).
pub const TOOLS_VENV: &str = "target/tools/venv";

/// Creates [`TOOLS_VENV`] and installs [`PYTHON_TOOLS`] into it when missing.
pub fn ensure_python_tools() -> Result<()> {
    let venv = std::path::Path::new(TOOLS_VENV);
    let marker = venv.join(".sonde-tools");
    let wanted = PYTHON_TOOLS.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted) {
        return Ok(());
    }
    eprintln!("xtask: installing {} into {TOOLS_VENV}", PYTHON_TOOLS.join(" "));
    let status = Command::new("python3")
        .args(["-m", "venv", TOOLS_VENV])
        .status()
        .context("python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv {TOOLS_VENV} failed (is python3-venv installed?)");
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PYTHON_TOOLS)
        .status()
        .context("pip install")?;
    if !status.success() {
        bail!("pip install {} failed", PYTHON_TOOLS.join(" "));
    }
    std::fs::write(marker, wanted)?;
    Ok(())
}

/// What `cargo xtask bench profile` compares sonde with, and builds its workload with.
pub const PROFILE_BENCH_PACKAGES: &[&str] = &["linux-perf", "bpftrace", "gcc", "g++", "xz-utils", "gdb"];

/// What `cargo xtask bench net` serves, loads and compares sonde with.
pub const NET_BENCH_PACKAGES: &[&str] = &["nginx", "wrk", "bpftrace"];

/// What `cargo xtask bench agent` serves and loads.
pub const AGENT_BENCH_PACKAGES: &[&str] = &["nginx", "wrk"];

/// What `cargo xtask bench protocols` serves and loads (wrk paced by Lua).
pub const PROTOCOLS_BENCH_PACKAGES: &[&str] = &["nginx", "wrk", "golang-go", "nghttp2-server", "nghttp2-client"];

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

/// Where the tests' Python environment lives, relative to the workspace root.
pub const VENV: &str = ".venv";

/// PyPI packages of the OTLP test receiver (tests/otlp_receiver.py), and
/// the JSON Schema validator that checks `sonde schema` (tests/schema.rs).
/// The receiver's profiles messages must match the Rust `opentelemetry-proto`
/// crate's: 1.45 carries the same development-stage profiles proto as 0.33.
/// `mysql-connector-python` drives MySQL's binary prepared statements
/// (COM_STMT_PREPARE/EXECUTE), which no Debian command-line client sends.
pub const VENV_PACKAGES: &[&str] = &[
    "grpcio",
    "protobuf",
    "opentelemetry-proto==1.45.2",
    "jsonschema",
    "mysql-connector-python",
];

fn venv_ready() -> bool {
    Command::new(format!("{VENV}/bin/python"))
        .args([
            "-c",
            "import grpc, google.protobuf, jsonschema, mysql.connector, opentelemetry.proto.collector.profiles.v1development",
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Creates `.venv` with [`VENV_PACKAGES`] when it is missing or incomplete.
pub fn ensure_python_venv() -> Result<()> {
    if venv_ready() {
        return Ok(());
    }
    eprintln!("xtask: creating {VENV} with {}", VENV_PACKAGES.join(" "));
    let venv = || Command::new("python3").args(["-m", "venv", VENV]).status();
    if !venv().is_ok_and(|s| s.success()) {
        // Debian splits venv (and ensurepip) out of python3.
        ensure_packages(&["python3-venv"])?;
        if !venv().context("python3 -m venv")?.success() {
            bail!("`python3 -m venv {VENV}` failed");
        }
    }
    let status = Command::new(format!("{VENV}/bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
        .args(VENV_PACKAGES)
        .status()
        .context("pip install")?;
    if !status.success() || !venv_ready() {
        bail!("installing {} into {VENV} failed", VENV_PACKAGES.join(" "));
    }
    Ok(())
}
