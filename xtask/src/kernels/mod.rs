//! `cargo xtask kernels [--kernel 6.1 …]`: the kernel matrix. Every eBPF
//! source must load and work on each kernel of [`KERNELS`], not just on the
//! machine that built it: CO-RE relocations, tracepoint layouts and
//! attach types differ between kernels.
//!
//! For each kernel: fetch Debian's image ([`fetch`]), build a tiny
//! initramfs ([`initramfs`]), boot it under qemu with the host's root
//! shared read-only ([`vm`]) and run `sonde conformance` inside, which
//! loads every source, drives a small workload and checks what each one
//! saw. Then a table kernel × source, and the README's support matrix
//! ([`report`]). Fails on any failure not declared in [`EXPECTED`]; a
//! declared one must name the missing kernel feature, and `sonde doctor`
//! in that guest must say the same.

mod fetch;
mod initramfs;
mod report;
mod vm;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where images, initramfs and guest logs are cached.
pub const CACHE: &str = "target/kernels";

/// How long one guest may take, boot to power-off (TCG is slow: about a
/// minute is normal for a debug build of sonde).
const GUEST_TIMEOUT: Duration = Duration::from_secs(420);

/// A kernel of the matrix: a Debian cloud kernel (small: virtio drivers,
/// BTF, kprobes, fentry, ring buffers, the distributions' usual config).
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Its name on the command line and in the report.
    pub name: &'static str,
    /// The Debian suite it comes from (names the private apt state).
    pub suite: &'static str,
    /// The suite's sources.list lines (`KEYRING` stands for [`KEYRING`]).
    pub sources: &'static str,
    /// The meta package that points to the suite's current image of this
    /// series: resolved at each run, so the matrix follows security updates.
    pub meta: &'static str,
    /// The image flavour.
    pub flavour: &'static str,
}

/// Debian's archive keys (package debian-archive-keyring), for apt's `signed-by`.
pub const KEYRING: &str = "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]";

/// The matrix: the LTS kernels that most nodes run (5.10: Debian 11,
/// Amazon Linux 2; 6.1: Debian 12, Amazon Linux 2023; 6.12: Debian 13,
/// RHEL 10) and the newest release (Debian unstable).
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        suite: "bullseye",
        sources: "deb KEYRING http://deb.debian.org/debian-security bullseye-security main",
        meta: "linux-image-cloud-amd64",
        flavour: "-cloud-amd64",
    },
    Kernel {
        name: "6.1",
        suite: "bookworm",
        sources: BOOKWORM,
        meta: "linux-image-cloud-amd64",
        flavour: "-cloud-amd64",
    },
    Kernel {
        name: "6.12",
        suite: "bookworm",
        sources: BOOKWORM,
        meta: "linux-image-6.12-cloud-amd64",
        flavour: "-cloud-amd64",
    },
    Kernel {
        name: "7.x",
        suite: "sid",
        sources: "deb KEYRING http://deb.debian.org/debian sid main",
        meta: "linux-image-cloud-amd64",
        flavour: "-cloud-amd64",
    },
];

const BOOKWORM: &str = "deb KEYRING http://deb.debian.org/debian bookworm main\n\
                        deb KEYRING http://deb.debian.org/debian-security bookworm-security main";

/// A failure that is known and accepted: `kernel` lacks `feature`, which
/// `source` needs. `sonde doctor` in that guest must report the same
/// feature missing, or the run fails anyway.
#[derive(Clone, Copy, Debug)]
pub struct Expected {
    pub kernel: &'static str,
    pub source: &'static str,
    /// A word `sonde doctor` uses for it: an attach type of its
    /// `features` (`fentry`, `ringbuf` …) or a word of its reason.
    pub feature: &'static str,
}

/// Every declared failure: none today.
///
/// (The matrix found one: `net_flows`' cgroup_skb programs called
/// `bpf_get_current_pid_tgid` and `bpf_get_current_comm`, which 5.10 and 6.1
/// refuse to that program type, and 6.12 the second; it now loads them
/// without those calls where the kernel refuses them.)
pub const EXPECTED: &[Expected] = &[];

/// Runs the matrix on `names` (every kernel when empty) for `sources`
/// (every eBPF source when empty).
pub fn run(names: &[String], sources: &[String], sonde: Option<PathBuf>) -> Result<()> {
    crate::setup::ensure_packages(crate::setup::KERNEL_PACKAGES)?;
    if !crate::setup::is_root() {
        bail!("cargo xtask kernels needs root (apt-get, virtiofsd)");
    }
    let kernels: Vec<&Kernel> = if names.is_empty() {
        KERNELS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                KERNELS.iter().find(|k| k.name == n).with_context(|| {
                    let all: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
                    format!("no kernel `{n}` in the matrix; there are: {}", all.join(", "))
                })
            })
            .collect::<Result<_>>()?
    };
    let sonde = match sonde {
        Some(path) => path,
        None => {
            crate::cargo(&["build", "--package", "sonde"])?;
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            Path::new(&target).join("debug/sonde")
        }
    };
    let sonde = std::fs::canonicalize(&sonde).with_context(|| format!("no sonde binary at {}", sonde.display()))?;
    let go_tls = build_go_tls()?;
    let started = Instant::now();
    let mut runs = Vec::new();
    for kernel in kernels {
        let run = boot(kernel, &sonde, &go_tls, sources)
            .unwrap_or_else(|error| report::Run::broken(kernel, format!("{error:#}")));
        runs.push(run);
    }
    let wall = started.elapsed();
    let matrix = report::Matrix::new(runs, EXPECTED);
    println!("{}", matrix.table());
    println!("kernel matrix: {:.0} s wall", wall.as_secs_f64());
    // Only a run of the whole matrix describes it.
    if names.is_empty() && sources.is_empty() {
        matrix.update_readme(Path::new("README.md"), wall)?;
    }
    let failures = matrix.failures();
    if failures > 0 {
        bail!("{failures} source(s) failed on a kernel without a declared expectation (logs in {CACHE}/<kernel>/)");
    }
    Ok(())
}

/// Fetches, boots and runs one kernel.
/// The Go HTTPS test program (tests/workload/gotls), static, for the
/// protocols check's Go `crypto/tls` part (the guest sees the host's files).
fn build_go_tls() -> Result<PathBuf> {
    let out = std::fs::canonicalize(CACHE)
        .or_else(|_| std::fs::create_dir_all(CACHE).and_then(|_| std::fs::canonicalize(CACHE)))?
        .join("gotls");
    let status = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir("tests/workload/gotls")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "off")
        .env("GOCACHE", out.with_file_name("gocache"))
        .env("CGO_ENABLED", "0")
        .status()
        .context("go (apt-get install golang-go)")?;
    if !status.success() {
        bail!("go build tests/workload/gotls failed");
    }
    Ok(out)
}

fn boot(kernel: &Kernel, sonde: &Path, go_tls: &Path, sources: &[String]) -> Result<report::Run> {
    let unpacked = fetch::fetch(kernel)?;
    let dir = Path::new(CACHE).join(kernel.name);
    let initrd = dir.join("initramfs.cpio");
    initramfs::build(&unpacked.modules, &initrd)?;
    eprintln!("xtask: kernel {}: booting {}", kernel.name, unpacked.package);
    let started = Instant::now();
    let vm = vm::Boot {
        name: kernel.name,
        vmlinuz: &unpacked.vmlinuz,
        initrd: &std::fs::canonicalize(&initrd)?,
        sonde,
        go_tls,
        sources,
        dir: &dir,
        timeout: GUEST_TIMEOUT,
    };
    let mut data = vm.run()?;
    if !data.contains(vm::STARTED) {
        // The kernel died before sonde ran (seen once in a few boots of
        // 7.x under TCG: an int3 Oops while patching kernel text). That
        // says nothing about sonde; a second boot does.
        eprintln!(
            "xtask: kernel {} did not reach the guest script, booting again; console:\n{}",
            kernel.name,
            vm::console_tail(&dir, 15)
        );
        data = vm.run()?;
    }
    eprintln!(
        "xtask: kernel {}: done in {:.0} s",
        kernel.name,
        started.elapsed().as_secs_f64()
    );
    report::Run::parse(kernel, unpacked.package, &data)
        .map_err(|error| anyhow::anyhow!("{error:#}\nconsole:\n{}", vm::console_tail(&dir, 30)))
}
