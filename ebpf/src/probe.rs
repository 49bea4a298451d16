//! Kernel facts and attach trials for `sonde doctor`.
//!
//! Facts come from the kernel's own files; whether an attach type works is
//! learned by loading and attaching an empty program of that type
//! (`bpf/probes.bpf.c`), because a kernel can accept a program type and
//! still refuse to attach it (fentry without BPF trampolines, kprobes
//! without `CONFIG_KPROBE_EVENTS`). Minimum kernels: tracepoint 4.7,
//! kprobe 4.1, uprobe 4.1, perf_event 4.9, fentry 5.5 (x86-64; arm64 6.0),
//! ring buffer 5.8.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::path::PathBuf;

use aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
use aya::programs::uprobe::UProbeScope;
use aya::programs::{FEntry, KProbe, PerfEvent, UProbe};

use crate::error::LoadError;
use crate::loader::{kernel_btf, load_error, Object};
use crate::system;

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it and NUL-terminates its fields.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".to_string();
    }
    // SAFETY: the kernel NUL-terminates `release` within the array.
    unsafe { CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `(major, minor)` of a release string (`6.18.44-fc` → `(6, 18)`).
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether the kernel's BTF is present and parses.
pub fn btf() -> Result<(), LoadError> {
    kernel_btf().map(|_| ())
}

/// `kernel.perf_event_paranoid`: 2 or less lets CAP_PERFMON (or root) open
/// the perf events that tracepoints and profilers use; 3 and 4 (Debian's
/// and Android's extra levels) forbid it to anyone without CAP_PERFMON.
pub fn perf_event_paranoid() -> io::Result<i32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// How cgroups are mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupMode {
    /// cgroup v2 only, here (the default since systemd 247 / Kubernetes 1.25 nodes).
    Unified(PathBuf),
    /// v1 controllers with a v2 hierarchy beside them, here.
    Hybrid(PathBuf),
    /// v1 only.
    Legacy,
}

/// How cgroups are mounted in this mount namespace.
pub fn cgroup_mode() -> io::Result<CgroupMode> {
    let mounts = system::mounts().map_err(io::Error::other)?;
    let v2 = mounts.iter().find(|m| m.fstype == "cgroup2").map(|m| m.path.clone());
    let v1 = mounts.iter().any(|m| m.fstype == "cgroup");
    Ok(match (v2, v1) {
        (Some(path), false) => CgroupMode::Unified(path),
        (Some(path), true) => CgroupMode::Hybrid(path),
        (None, _) => CgroupMode::Legacy,
    })
}

/// An attach type sources may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// Tracepoints (stable kernel events).
    Tracepoint,
    /// kprobes (any kernel function; needs `CONFIG_KPROBE_EVENTS`).
    Kprobe,
    /// fentry/fexit (BPF trampolines).
    Fentry,
    /// uprobes (user-space functions).
    Uprobe,
    /// perf events (CPU sampling).
    PerfEvent,
    /// BPF ring buffers.
    RingBuf,
}

impl Feature {
    /// Every feature `sonde doctor` checks.
    pub const ALL: [Feature; 6] = [
        Feature::Tracepoint,
        Feature::Kprobe,
        Feature::Fentry,
        Feature::Uprobe,
        Feature::PerfEvent,
        Feature::RingBuf,
    ];

    /// A short name.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::Tracepoint => "tracepoint",
            Feature::Kprobe => "kprobe",
            Feature::Fentry => "fentry",
            Feature::Uprobe => "uprobe",
            Feature::PerfEvent => "perf_event",
            Feature::RingBuf => "ringbuf",
        }
    }

    /// The first kernel version that has it.
    pub const fn min_kernel(self) -> &'static str {
        match self {
            Feature::Tracepoint => "4.7",
            Feature::Kprobe | Feature::Uprobe => "4.1",
            Feature::Fentry => "5.5",
            Feature::PerfEvent => "4.9",
            Feature::RingBuf => "5.8",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kernel function the kprobe and fentry trials attach to: present on
/// every kernel and rarely called.
pub const TRIAL_KERNEL_FUNCTION: &str = "vfs_fsync";
/// The tracepoint the tracepoint trial attaches to.
pub const TRIAL_TRACEPOINT: (&str, &str) = ("sched", "sched_process_fork");

/// The function the uprobe trial attaches to, in this executable.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sonde_ebpf_uprobe_target() -> u64 {
    std::hint::black_box(0)
}

/// Loads and attaches an empty program of `feature`'s type, then detaches it.
pub fn trial(feature: Feature) -> Result<(), LoadError> {
    const OBJECT: &str = "probes";
    if feature == Feature::RingBuf {
        return ringbuf_trial();
    }
    let mut object = Object::load(OBJECT, crate::objects::PROBES, |_| {})?;
    match feature {
        Feature::Tracepoint => {
            let (category, name) = TRIAL_TRACEPOINT;
            object.attach_tracepoint("probe_tracepoint", category, name)
        }
        Feature::Kprobe => {
            let program = "probe_kprobe";
            let prog: &mut KProbe = object.program_as(program)?;
            prog.load().map_err(|e| load_error(OBJECT, program, e))?;
            prog.attach(TRIAL_KERNEL_FUNCTION, 0)
                .map(drop)
                .map_err(|source| LoadError::Attach {
                    object: OBJECT,
                    program,
                    attach_point: format!("kprobe {TRIAL_KERNEL_FUNCTION}"),
                    source: Box::new(source),
                })
        }
        Feature::Fentry => {
            let program = "probe_fentry";
            let btf = kernel_btf()?;
            let prog: &mut FEntry = object.program_as(program)?;
            prog.load(TRIAL_KERNEL_FUNCTION, &btf)
                .map_err(|e| load_error(OBJECT, program, e))?;
            prog.attach().map(drop).map_err(|source| LoadError::Attach {
                object: OBJECT,
                program,
                attach_point: format!("fentry {TRIAL_KERNEL_FUNCTION}"),
                source: Box::new(source),
            })
        }
        Feature::Uprobe => {
            let program = "probe_uprobe";
            let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
            let prog: &mut UProbe = object.program_as(program)?;
            prog.load().map_err(|e| load_error(OBJECT, program, e))?;
            let symbol = "sonde_ebpf_uprobe_target";
            let attached = prog.attach(symbol, &exe, UProbeScope::CallingProcess);
            // Fire it once, which also keeps the symbol in the binary.
            std::hint::black_box(sonde_ebpf_uprobe_target as extern "C" fn() -> u64)();
            attached.map(drop).map_err(|source| LoadError::Attach {
                object: OBJECT,
                program,
                attach_point: format!("uprobe {}:{symbol}", exe.display()),
                source: Box::new(source),
            })
        }
        Feature::PerfEvent => {
            let program = "probe_perf_event";
            let prog: &mut PerfEvent = object.program_as(program)?;
            prog.load().map_err(|e| load_error(OBJECT, program, e))?;
            prog.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu: 0 },
                SamplePolicy::Frequency(1),
                false,
            )
            .map(drop)
            .map_err(|source| LoadError::Attach {
                object: OBJECT,
                program,
                attach_point: "perf_event software:cpu-clock cpu 0".to_string(),
                source: Box::new(source),
            })
        }
        Feature::RingBuf => unreachable!("handled above"),
    }
}

fn ringbuf_trial() -> Result<(), LoadError> {
    let source = match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
        Ok(true) => return Ok(()),
        Ok(false) => aya::maps::MapError::CreateError {
            name: "ringbuf".to_string(),
            io_error: io::Error::from_raw_os_error(libc::EINVAL),
        },
        Err(error) => aya::maps::MapError::SyscallError(error),
    };
    Err(LoadError::Map {
        object: "probes",
        map: "ringbuf",
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases() {
        assert_eq!(parse_release("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("x"), None);
    }
}
