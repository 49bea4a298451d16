//! Facts about this node: kernel, BTF, file systems, cgroups,
//! capabilities, perf_event_paranoid, and which attach types work.

use sonde_ebpf::caps::{CapSet, Capability};
use sonde_ebpf::probe::{self, CgroupMode, Feature};
use sonde_ebpf::system::{self, Mounted};

/// The oldest kernel sonde's eBPF sources run on.
pub const MIN_KERNEL: (u32, u32) = (5, 5);

/// One line of the report: a fact, whether it is fine, and if not, why
/// and what to do.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked (`kernel`, `tracefs` …).
    pub name: &'static str,
    /// What was found.
    pub value: String,
    /// `Ok`, `Warn` (works, with a caveat) or `Fail`.
    pub status: Status,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Not needed, or works with a caveat.
    Warn,
    /// Something sources need is missing.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

fn check(name: &'static str, value: impl Into<String>, status: Status, fix: Option<String>) -> Check {
    Check {
        name,
        value: value.into(),
        status,
        fix,
    }
}

/// Everything `sonde doctor` learned about the node.
#[derive(Clone, Debug)]
pub struct Facts {
    pub release: String,
    pub version: Option<(u32, u32)>,
    pub caps: Option<CapSet>,
    pub paranoid: Option<i32>,
    pub tracefs_ok: bool,
    pub btf_ok: bool,
    pub checks: Vec<Check>,
    /// (feature, error text if it does not work).
    pub features: Vec<(Feature, Option<String>)>,
}

impl Facts {
    pub fn has(&self, cap: Capability) -> bool {
        self.caps.is_some_and(|c| c.has(cap))
    }

    pub fn can_bpf(&self) -> bool {
        self.caps.is_some_and(CapSet::can_bpf)
    }

    pub fn can_perfmon(&self) -> bool {
        self.caps.is_some_and(CapSet::can_perfmon)
    }
}

/// Examines the node. Mounts tracefs and bpffs when missing, as the agent would.
pub fn gather() -> Facts {
    let release = probe::kernel_release();
    let version = probe::parse_release(&release);
    let caps = CapSet::effective().ok();
    let paranoid = probe::perf_event_paranoid().ok();
    let prepared = system::prepare();
    let mut checks = Vec::new();

    let kernel_ok = version.is_some_and(|v| v >= MIN_KERNEL);
    checks.push(check(
        "kernel",
        release.clone(),
        if kernel_ok { Status::Ok } else { Status::Fail },
        (!kernel_ok).then(|| {
            format!(
                "sonde's eBPF sources need Linux {}.{}+ with BTF; move the workload to nodes with a newer \
                 kernel (e.g. a newer node image)",
                MIN_KERNEL.0, MIN_KERNEL.1
            )
        }),
    ));

    let btf = probe::btf();
    let btf_ok = btf.is_ok();
    checks.push(match btf {
        Ok(()) => check("btf", sonde_ebpf::loader::KERNEL_BTF, Status::Ok, None),
        Err(error) => check(
            "btf",
            error.to_string(),
            Status::Fail,
            Some(
                "the kernel exposes no BTF: use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Ubuntu 20.10+, \
                 Debian 11+, RHEL 8.2+, most managed Kubernetes node images), and mount the host's /sys \
                 into the pod"
                    .to_string(),
            ),
        ),
    });

    let tracefs_ok = prepared.tracefs.is_ok();
    checks.push(mount_check(
        "tracefs",
        &prepared.tracefs,
        "mount the host's /sys/kernel/tracing into the pod (hostPath), or grant CAP_SYS_ADMIN so sonde mounts \
         it",
    ));
    checks.push(match system::find_mount("debugfs") {
        Some(path) => check("debugfs", path.display().to_string(), Status::Ok, None),
        None => check("debugfs", "not mounted (not needed when tracefs is)", Status::Ok, None),
    });
    checks.push(mount_check(
        "bpffs",
        &prepared.bpffs,
        "mount the host's /sys/fs/bpf into the pod (hostPath) to pin maps; sources run without it",
    ));
    if let Some(last) = checks.last_mut() {
        if last.status == Status::Fail {
            // Nothing pins yet: a missing bpffs does not stop any source.
            last.status = Status::Warn;
        }
    }

    checks.push(match probe::cgroup_mode() {
        Ok(CgroupMode::Unified(path)) => check("cgroup_v2", format!("unified at {}", path.display()), Status::Ok, None),
        Ok(CgroupMode::Hybrid(path)) => check(
            "cgroup_v2",
            format!("hybrid: v2 at {}, v1 controllers elsewhere", path.display()),
            Status::Ok,
            None,
        ),
        Ok(CgroupMode::Legacy) | Err(_) => check(
            "cgroup_v2",
            "not mounted",
            Status::Warn,
            Some("pod attribution works best with cgroup v2 (systemd.unified_cgroup_hierarchy=1)".to_string()),
        ),
    });

    let (cap_value, cap_status, cap_fix) = capabilities_check(caps, version);
    checks.push(check("capabilities", cap_value, cap_status, cap_fix));

    checks.push(match paranoid {
        Some(level) if level > 2 && !caps.is_some_and(CapSet::can_perfmon) => check(
            "perf_event_paranoid",
            level.to_string(),
            Status::Fail,
            Some(format!(
                "kernel.perf_event_paranoid={level}: set it to 2 (sysctl -w kernel.perf_event_paranoid=2) or \
                 grant CAP_PERFMON"
            )),
        ),
        Some(level) => check("perf_event_paranoid", level.to_string(), Status::Ok, None),
        None => check("perf_event_paranoid", "unknown", Status::Warn, None),
    });

    checks.push(match &prepared.memlock {
        Ok(_) if !system::kernel_uses_memlock() => check("memlock", "not used (kernel 5.11+)", Status::Ok, None),
        Ok(_) => check("memlock", "unlimited", Status::Ok, None),
        Err(error) => check(
            "memlock",
            error.to_string(),
            Status::Fail,
            Some("kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: grant CAP_SYS_RESOURCE".to_string()),
        ),
    });

    let can_load = caps.is_some_and(|c| c.can_bpf() && c.can_perfmon());
    let features = Feature::ALL
        .into_iter()
        .map(|feature| {
            (
                feature,
                probe::trial(feature).err().map(|e| feature_note(feature, &e, can_load)),
            )
        })
        .collect();

    Facts {
        release,
        version,
        caps,
        paranoid,
        tracefs_ok,
        btf_ok,
        checks,
        features,
    }
}

fn mount_check(name: &'static str, result: &Result<Mounted, system::SystemError>, fix: &str) -> Check {
    match result {
        Ok(Mounted::Already(path)) => check(name, path.display().to_string(), Status::Ok, None),
        Ok(Mounted::Now(path)) => check(name, format!("{} (mounted by sonde)", path.display()), Status::Ok, None),
        Err(error) => check(name, error.to_string(), Status::Fail, Some(fix.to_string())),
    }
}

fn capabilities_check(caps: Option<CapSet>, version: Option<(u32, u32)>) -> (String, Status, Option<String>) {
    let Some(caps) = caps else {
        return ("unknown (/proc/self/status unreadable)".to_string(), Status::Warn, None);
    };
    let list = Capability::ALL
        .iter()
        .map(|c| format!("{} {}", c.name(), if caps.has(*c) { "yes" } else { "no" }))
        .collect::<Vec<_>>()
        .join(", ");
    let missing: Vec<Capability> = [
        (Capability::Bpf, caps.can_bpf()),
        (Capability::Perfmon, caps.can_perfmon()),
    ]
    .into_iter()
    .filter(|(_, ok)| !ok)
    .map(|(c, _)| c)
    .collect();
    if missing.is_empty() {
        return (list, Status::Ok, None);
    }
    (list, Status::Fail, Some(capability_fix(&missing, version)))
}

/// What to grant, in the words of a pod spec.
pub fn capability_fix(missing: &[Capability], version: Option<(u32, u32)>) -> String {
    let names: Vec<String> = missing.iter().map(|c| c.to_string()).collect();
    let mut add: Vec<&str> = missing.iter().map(|c| c.name()).collect();
    if version.is_some_and(|v| v < (5, 8)) {
        // CAP_BPF and CAP_PERFMON do not exist before 5.8.
        add = vec!["SYS_ADMIN"];
    }
    format!(
        "missing {}: add {:?} to the container's securityContext.capabilities.add (or run it with \
         privileged: true); outside Kubernetes, run as root",
        names.join(" and "),
        add
    )
}

/// Why an attach type does not work, in one line.
fn feature_note(feature: Feature, error: &sonde_ebpf::LoadError, can_load: bool) -> String {
    use std::io::ErrorKind;
    let kind = error
        .errno()
        .map(|errno| std::io::Error::from_raw_os_error(errno).kind());
    // The verifier log goes to the source trials; one line is enough here.
    let first_line = error.to_string().lines().next().unwrap_or_default().to_string();
    match (feature, kind) {
        (_, Some(ErrorKind::PermissionDenied)) if !can_load => format!("not permitted: {first_line}"),
        (Feature::Kprobe, Some(ErrorKind::NotFound)) => {
            "the kernel has no kprobe PMU (built without CONFIG_KPROBES/CONFIG_KPROBE_EVENTS); sources use \
             tracepoints instead"
                .to_string()
        }
        (Feature::Fentry, _) if can_load => format!(
            "the kernel refuses fentry programs ({}): no BPF trampolines on this kernel or architecture",
            error
                .errno()
                .map(|e| std::io::Error::from_raw_os_error(e).to_string())
                .unwrap_or(first_line)
        ),
        _ => first_line,
    }
}
