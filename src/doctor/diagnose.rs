//! Turns a failed load-and-attach trial into its reason and a fix a
//! Kubernetes user can act on.

use std::io::ErrorKind;

use sonde_core::privileges::CapabilitySet;
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

/// Explains the error of a source's trial (an [`EbpfSide`]'s, boxed by
/// `core`): a [`LoadError`] as [`diagnose`] does, anything else as it says.
///
/// [`EbpfSide`]: sonde_core::registry::EbpfSide
/// `missing` are the capabilities the source declares and this process
/// lacks: a refusal is theirs before it is anything else's.
pub fn diagnose_trial(
    error: &sonde_core::BoxError,
    facts: &Facts,
    min_kernel: (u32, u32),
    missing: CapabilitySet,
) -> Diagnosis {
    match error.downcast_ref::<LoadError>() {
        Some(load) => {
            let mut diagnosis = diagnose(load, facts, min_kernel);
            let denied =
                load.errno().map(|e| std::io::Error::from_raw_os_error(e).kind()) == Some(ErrorKind::PermissionDenied);
            // CAP_BPF and CAP_PERFMON have their own fix (paranoid levels,
            // SYS_ADMIN before 5.8); any other missing one is named here
            // rather than blaming seccomp or an LSM.
            if denied && facts.can_bpf() && facts.can_perfmon() && !missing.is_empty() {
                diagnosis.fix = missing_fix(missing);
            }
            diagnosis
        }
        None => Diagnosis {
            reason: error.to_string(),
            fix: "not a load failure: fix what the reason names (the node's facts are listed above)".to_string(),
            verifier_log: None,
        },
    }
}

/// A source whose trial passed (or that has none) may still lack a
/// capability it needs at run time (net_flows' CAP_NET_ADMIN, profile's
/// CAP_SYS_PTRACE): the agent cannot gain it later, so it is a failure.
pub fn missing_capabilities(
    type_name: &str,
    needs: CapabilitySet,
    missing: CapabilitySet,
    facts: &Facts,
) -> Result<(), Diagnosis> {
    if missing.is_empty() || facts.caps.is_none() {
        return Ok(());
    }
    Err(Diagnosis {
        reason: format!(
            "`{type_name}` needs {}; this process lacks {}",
            names(needs),
            names(missing)
        ),
        fix: missing_fix(missing),
        verifier_log: None,
    })
}

fn names(set: CapabilitySet) -> String {
    let names: Vec<String> = set.iter().map(|c| format!("CAP_{c}")).collect();
    names.join(", ")
}

fn missing_fix(missing: CapabilitySet) -> String {
    let names: Vec<String> = missing.iter().map(|c| format!("CAP_{c}")).collect();
    let add: Vec<String> = missing.iter().map(|c| c.name()).collect();
    format!(
        "missing {}: add {:?} to the container's securityContext.capabilities.add (or run it with \
         privileged: true); outside Kubernetes, run as root",
        names.join(" and "),
        add
    )
}

/// Explains `error`, using what is known about the node.
pub fn diagnose(error: &LoadError, facts: &Facts, min_kernel: (u32, u32)) -> Diagnosis {
    let reason = error.to_string();
    let verifier_log = error.verifier_log().map(str::to_string);
    let fix = fix_for(error, facts, min_kernel);
    // The verifier log is long; the reason keeps its first line, and the
    // helper the kernel refused, which is what a reader needs from the log.
    let reason = match &verifier_log {
        Some(log) => {
            let first = reason.lines().next().unwrap_or_default();
            match (refused_helper(log), failed_relocation(log)) {
                (Some(helper), _) => format!("{first}: helper `{helper}` is not available to this program type"),
                (None, Some(at)) => {
                    format!("{first}: a CO-RE relocation found no match in this kernel's BTF, at `{at}`")
                }
                (None, None) => first.to_string(),
            }
        }
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
        Some(ErrorKind::NotFound) if is_syscall_tracepoint(error) => {
            "the kernel has no syscall tracepoints (`syscalls:sys_enter_*`; it was built without \
             CONFIG_FTRACE_SYSCALLS): use a kernel built with it (every major distribution's is)"
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
        _ if error.verifier_log().and_then(refused_helper).is_some() => format!(
            "kernel {} does not let this program type call `{}` (newer kernels do): this source cannot run \
             on it; schedule it on nodes with a newer kernel",
            facts.release,
            error.verifier_log().and_then(refused_helper).unwrap_or_default()
        ),
        _ if error.verifier_log().and_then(failed_relocation).is_some() => format!(
            "the program reads a kernel field or type that kernel {} does not have (at `{}`): the source must \
             guard it (bpf_core_field_exists) or do without it; report it with the log",
            facts.release,
            error.verifier_log().and_then(failed_relocation).unwrap_or_default()
        ),
        _ if error.verifier_log().is_some() => format!(
            "the kernel's verifier rejected the program (log below); kernel {} may lack a feature it needs: \
             report it with the log",
            facts.release
        ),
        _ => "see the reason; `sonde doctor --json` has the details".to_string(),
    }
}

/// Whether `error` is the attach of a `syscalls:` tracepoint.
fn is_syscall_tracepoint(error: &LoadError) -> bool {
    matches!(error, LoadError::Attach { attach_point, .. } if attach_point.starts_with("tracepoint syscalls:"))
}

/// The helper the verifier refused, from the end of its log: `unknown func
/// NAME#ID` (a kernel that does not know the helper, or not for this
/// program type) or `program of this type cannot use helper NAME#ID`.
pub fn refused_helper(log: &str) -> Option<&str> {
    log.lines().rev().take(12).find_map(|line| {
        let rest = line
            .strip_prefix("unknown func ")
            .or_else(|| line.strip_prefix("program of this type cannot use helper "))?;
        rest.split('#').next().filter(|name| !name.is_empty())
    })
}

/// The call aya (like libbpf) puts in place of an instruction whose CO-RE
/// relocation matched nothing in the kernel's BTF: helper id 0xbad2310.
const POISONED_RELOCATION: &str = "call unknown#195896080";

/// The source line of a CO-RE relocation that failed (the `; …` line the
/// verifier printed before the poisoned call), if one did.
pub fn failed_relocation(log: &str) -> Option<&str> {
    let lines: Vec<&str> = log.lines().collect();
    let at = lines.iter().position(|l| l.contains(POISONED_RELOCATION))?;
    let source = lines[..at].iter().rev().find_map(|l| l.strip_prefix("; "));
    Some(source.map_or("?", |s| s.split(" @ ").next().unwrap_or(s).trim()))
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
        let fix = capability_fix(&missing, facts.version);
        return match facts.paranoid.filter(|level| *level > 2) {
            // Debian/Android's extra levels also stop perf events without CAP_PERFMON.
            Some(level) if !facts.can_perfmon() => format!(
                "kernel.perf_event_paranoid={level}: set it to 2 (sysctl -w kernel.perf_event_paranoid=2) or \
                 grant CAP_PERFMON; and {fix}"
            ),
            _ => fix,
        };
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

#[cfg(test)]
mod tests {
    use std::io;

    use sonde_ebpf::caps::CapSet;

    use super::*;

    fn facts(version: (u32, u32), caps: u64) -> Facts {
        Facts {
            release: format!("{}.{}.0", version.0, version.1),
            version: Some(version),
            caps: Some(CapSet(caps)),
            paranoid: Some(2),
            tracefs_ok: true,
            btf_ok: true,
            checks: Vec::new(),
            features: Vec::new(),
        }
    }

    fn denied() -> LoadError {
        LoadError::Verifier {
            object: "disk_latency",
            program: "block_rq_issue",
            io_error: Box::new(io::Error::from_raw_os_error(1)),
            verifier_log: String::new(),
        }
    }

    const ALL_CAPS: u64 = (1 << 40) - 1;
    const NO_BPF: u64 = ALL_CAPS & !(1 << 39) & !(1 << 38) & !(1 << 21);

    #[test]
    fn missing_capabilities_are_named_with_a_pod_spec_fix() {
        let d = diagnose(&denied(), &facts((6, 1), NO_BPF), (5, 5));
        assert!(d.fix.contains("missing CAP_BPF and CAP_PERFMON"), "{}", d.fix);
        assert!(d.fix.contains("securityContext.capabilities.add"), "{}", d.fix);
        // Before 5.8 there is no CAP_BPF: the fix says SYS_ADMIN.
        let d = diagnose(&denied(), &facts((5, 6), NO_BPF), (5, 5));
        assert!(d.fix.contains("SYS_ADMIN"), "{}", d.fix);
    }

    #[test]
    fn paranoid_kernels_and_old_kernels_and_missing_btf_get_their_own_fix() {
        let mut node = facts((6, 1), ALL_CAPS & !(1 << 38) & !(1 << 21));
        // CAP_BPF alone still lacks PERFMON.
        assert!(diagnose(&denied(), &node, (5, 5)).fix.contains("CAP_PERFMON"));
        node.paranoid = Some(3);
        let fix = diagnose(&denied(), &node, (5, 5)).fix;
        assert!(fix.starts_with("kernel.perf_event_paranoid=3: set it to 2"), "{fix}");
        node.caps = Some(CapSet(ALL_CAPS));
        assert!(diagnose(&denied(), &node, (5, 5)).fix.contains("seccomp"));

        let old = facts((4, 19), ALL_CAPS);
        let d = diagnose(&denied(), &old, (5, 5));
        assert!(d.fix.contains("older than 5.5"), "{}", d.fix);

        let mut no_btf = facts((6, 1), ALL_CAPS);
        no_btf.btf_ok = false;
        assert!(diagnose(&denied(), &no_btf, (5, 5))
            .fix
            .contains("CONFIG_DEBUG_INFO_BTF"));
    }

    #[test]
    fn a_missing_tracefs_is_told_apart_from_a_missing_tracepoint() {
        let missing = LoadError::Program {
            object: "disk_latency",
            program: "block_rq_issue",
            source: Box::new(sonde_ebpf::aya::programs::ProgramError::SyscallError(
                sonde_ebpf::aya::sys::SyscallError {
                    call: "perf_event_open",
                    io_error: io::Error::from_raw_os_error(2),
                },
            )),
        };
        let mut node = facts((6, 1), ALL_CAPS);
        assert!(diagnose(&missing, &node, (5, 5)).fix.contains("does not exist"));
        node.tracefs_ok = false;
        assert!(diagnose(&missing, &node, (5, 5)).fix.contains("/sys/kernel/tracing"));
    }

    #[test]
    fn missing_syscall_tracepoints_name_the_kernel_option() {
        let missing = LoadError::Attach {
            object: "protocols",
            program: "enter_read",
            attach_point: "tracepoint syscalls:sys_enter_read".to_string(),
            source: Box::new(sonde_ebpf::aya::programs::ProgramError::SyscallError(
                sonde_ebpf::aya::sys::SyscallError {
                    call: "perf_event_open",
                    io_error: io::Error::from_raw_os_error(2),
                },
            )),
        };
        let fix = diagnose(&missing, &facts((6, 1), ALL_CAPS), (5, 8)).fix;
        assert!(fix.contains("CONFIG_FTRACE_SYSCALLS"), "{fix}");
    }

    #[test]
    fn a_helper_the_kernel_refuses_is_named() {
        let refused = |log: &str| LoadError::Verifier {
            object: "net_flows",
            program: "flow_udp_egress",
            io_error: Box::new(io::Error::from_raw_os_error(22)),
            verifier_log: log.to_string(),
        };
        let node = facts((6, 12), ALL_CAPS);
        let d = diagnose(
            &refused("222: (85) call bpf_get_current_comm#16\nprogram of this type cannot use helper bpf_get_current_comm#16\nverification time 9052 usec\n"),
            &node,
            (5, 9),
        );
        assert!(
            d.reason
                .ends_with("helper `bpf_get_current_comm` is not available to this program type"),
            "{}",
            d.reason
        );
        assert!(d.fix.contains("call `bpf_get_current_comm`"), "{}", d.fix);
        let old = refused("214: (85) call bpf_get_current_pid_tgid#14\nunknown func bpf_get_current_pid_tgid#14\n");
        assert!(diagnose(&old, &facts((5, 10), ALL_CAPS), (5, 9))
            .fix
            .contains("`bpf_get_current_pid_tgid`"));
    }

    #[test]
    fn a_failed_core_relocation_is_named_with_its_source_line() {
        let log = "; if (ctx->ioprio == 0xffff) @ disk_latency.bpf.c:245\n36: (85) call unknown#195896080\n\
                   invalid func unknown#195896080\nverification time 1056 usec\n";
        let error = LoadError::Verifier {
            object: "disk_latency",
            program: "block_rq_issue",
            io_error: Box::new(io::Error::from_raw_os_error(22)),
            verifier_log: log.to_string(),
        };
        let d = diagnose(&error, &facts((6, 1), ALL_CAPS), (5, 5));
        assert!(d.reason.ends_with("at `if (ctx->ioprio == 0xffff)`"), "{}", d.reason);
        assert!(d.fix.contains("bpf_core_field_exists"), "{}", d.fix);
    }

    #[test]
    fn verifier_logs_are_kept_apart_from_the_reason() {
        let rejected = LoadError::Verifier {
            object: "disk_latency",
            program: "block_rq_complete",
            io_error: Box::new(io::Error::from_raw_os_error(13)),
            verifier_log: "0: R1=ctx()\ndereference of modified ctx ptr".to_string(),
        };
        let d = diagnose(&rejected, &facts((6, 1), ALL_CAPS), (5, 5));
        assert_eq!(d.reason.lines().count(), 1, "{}", d.reason);
        assert!(d.verifier_log.unwrap().contains("modified ctx ptr"));
    }
}
