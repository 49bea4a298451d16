//! Linux capabilities that eBPF sources need, read from
//! `/proc/self/status` (`CapEff`), named as users grant them
//! (`securityContext.capabilities.add: [BPF, PERFMON]` in Kubernetes).
//!
//! CAP_BPF and CAP_PERFMON exist since kernel 5.8; before that, loading
//! tracing programs needs CAP_SYS_ADMIN.

use std::fmt;
use std::io;

/// A capability sonde's sources may need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    /// Load programs and create maps (5.8+; CAP_SYS_ADMIN before).
    Bpf,
    /// Tracing programs, perf events, reading kernel memory (5.8+).
    Perfmon,
    /// Everything before 5.8; mounting tracefs and bpffs.
    SysAdmin,
    /// Raising RLIMIT_MEMLOCK on kernels before 5.11.
    SysResource,
    /// Reading other processes' memory maps (uprobes, symbolization).
    SysPtrace,
}

impl Capability {
    /// Every capability checked by `sonde doctor`.
    pub const ALL: [Capability; 5] = [
        Capability::Bpf,
        Capability::Perfmon,
        Capability::SysAdmin,
        Capability::SysResource,
        Capability::SysPtrace,
    ];

    /// The capability's number (`linux/capability.h`).
    pub const fn number(self) -> u32 {
        match self {
            Capability::SysPtrace => 19,
            Capability::SysAdmin => 21,
            Capability::SysResource => 24,
            Capability::Perfmon => 38,
            Capability::Bpf => 39,
        }
    }

    /// The name without `CAP_`, as Kubernetes and `capsh` write it (`BPF`).
    pub const fn name(self) -> &'static str {
        match self {
            Capability::Bpf => "BPF",
            Capability::Perfmon => "PERFMON",
            Capability::SysAdmin => "SYS_ADMIN",
            Capability::SysResource => "SYS_RESOURCE",
            Capability::SysPtrace => "SYS_PTRACE",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CAP_{}", self.name())
    }
}

/// A capability set (the effective set of this process).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSet(pub u64);

impl CapSet {
    /// This process' effective capabilities.
    pub fn effective() -> io::Result<CapSet> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        parse_status(&status, "CapEff:")
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no CapEff line in /proc/self/status"))
    }

    /// Whether `cap` is in the set.
    pub fn has(self, cap: Capability) -> bool {
        self.0 & (1u64 << cap.number()) != 0
    }

    /// Whether the set allows loading BPF programs and maps: CAP_BPF, or
    /// CAP_SYS_ADMIN (which also covers kernels before 5.8).
    pub fn can_bpf(self) -> bool {
        self.has(Capability::Bpf) || self.has(Capability::SysAdmin)
    }

    /// Whether the set allows tracing programs and perf events: CAP_PERFMON
    /// or CAP_SYS_ADMIN.
    pub fn can_perfmon(self) -> bool {
        self.has(Capability::Perfmon) || self.has(Capability::SysAdmin)
    }
}

fn parse_status(status: &str, field: &str) -> Option<CapSet> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    u64::from_str_radix(line[field.len()..].trim(), 16).ok().map(CapSet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cap_eff() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000000c000200000\n";
        let set = parse_status(status, "CapEff:").unwrap();
        assert!(set.has(Capability::Bpf));
        assert!(set.has(Capability::Perfmon));
        assert!(set.has(Capability::SysAdmin));
        assert!(!set.has(Capability::SysPtrace));
        assert!(set.can_bpf() && set.can_perfmon());
        assert_eq!(Capability::Bpf.to_string(), "CAP_BPF");
    }
}
