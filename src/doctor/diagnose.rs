//! Turns a failed load-and-attach trial into its reason and a fix a
//! Kubernetes user can act on.

use std::io::ErrorKind;

use sonde_ebpf::caps::Capability;
use sonde_ebpf::LoadError;

use super::checks::{capability_fix, Facts, MIN_KERNEL};

/// Why a source cannot run, and what to do.
#[derive(Clone, Debug)]
pub struct Diagnosis {
    /// The error, with the program, map and attach point.
    pub reason: String,
    /// What to do.
    pub fix: String,
    /// The verifier's log, when the kernel rejected a program.
    pub verifier_log: Option<String>,
}

/// Explains `error`, using what is known about the node.
pub fn diagnose(error: &LoadError, facts: &Facts, min_kernel: (u32, u32)) -> Diagnosis {
    let reason = error.to_string();
    let verifier_log = error.verifier_log().map(str::to_string);
    let fix = fix_for(error, facts, min_kernel);
    // The verifier log is long; the reason keeps its first line.
    let reason = match &verifier_log {
        Some(_) => reason.lines().next().unwrap_or_default().to_string(),
        None => reason,
    };
    Diagnosis {
        reason,
        fix,
        verifier_log,
    }
}

fn fix_for(error: &LoadError, facts: &Facts, min_kernel: (u32, u32)) -> String {
    if matches!(error, LoadError::KernelBtf { .. }) || !facts.btf_ok {
        return "the kernel exposes no BTF (/sys/kernel/btf/vmlinux): use a kernel built with \
                CONFIG_DEBUG_INFO_BTF=y and mount the host's /sys into the pod"
            .to_string();
    }
    if let Some(version) = facts.version {
        if version < min_kernel.max(MIN_KERNEL) {
            return format!(
                "kernel {} is older than {}.{}, the oldest this source supports: schedule it on nodes with a \
                 newer kernel",
                facts.release, min_kernel.0, min_kernel.1
            );
        }
    }
    let kind = error
        .errno()
        .map(|errno| std::io::Error::from_raw_os_error(errno).kind());
    match kind {
        // EPERM and EACCES.
        Some(ErrorKind::PermissionDenied) => permission_fix(facts),
        Some(ErrorKind::NotFound) if !facts.tracefs_ok => {
            "tracefs is not mounted: mount the host's /sys/kernel/tracing \
                                                   into the pod (hostPath), or grant CAP_SYS_ADMIN so sonde \
                                                   mounts it"
                .to_string()
        }
        Some(ErrorKind::NotFound) => {
            "an attach point does not exist on this kernel (see the reason): this source cannot run on it".to_string()
        }
        // E2BIG and ENOMEM.
        Some(ErrorKind::ArgumentListTooLong) | Some(ErrorKind::OutOfMemory) => {
            "the kernel refused the memory for the maps: raise the container's memory limit (kernels 5.11+ \
             charge BPF maps to the memory cgroup) or, on older kernels, grant CAP_SYS_RESOURCE"
                .to_string()
        }
        _ if error.verifier_log().is_some() => format!(
            "the kernel's verifier rejected the program (log below); kernel {} may lack a feature it needs: \
             report it with the log",
            facts.release
        ),
        _ => "see the reason; `sonde doctor --json` has the details".to_string(),
    }
}

fn permission_fix(facts: &Facts) -> String {
    let mut missing = Vec::new();
    if !facts.can_bpf() {
        missing.push(Capability::Bpf);
    }
    if !facts.can_perfmon() {
        missing.push(Capability::Perfmon);
    }
    if !missing.is_empty() {
        return capability_fix(&missing, facts.version);
    }
    if let Some(level) = facts.paranoid.filter(|l| *l > 2) {
        if !facts.has(Capability::Perfmon) && !facts.has(Capability::SysAdmin) {
            return format!(
                "kernel.perf_event_paranoid={level}: set it to 2 (sysctl -w kernel.perf_event_paranoid=2) or \
                 grant CAP_PERFMON"
            );
        }
    }
    if sonde_ebpf::system::kernel_uses_memlock() && !facts.has(Capability::SysResource) {
        return "kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: grant CAP_SYS_RESOURCE (or raise the \
                limit, e.g. LimitMEMLOCK=infinity)"
            .to_string();
    }
    "the capabilities are there, so something else forbids bpf(2) or perf_event_open(2): a seccomp profile \
     (set securityContext.seccompProfile.type: Unconfined, or allow both syscalls), an LSM policy \
     (AppArmor/SELinux), or kernel lockdown (check /sys/kernel/security/lockdown)"
        .to_string()
}
