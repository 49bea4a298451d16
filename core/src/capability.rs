//! [`Capability`] and [`CapabilitySet`]: Linux capabilities by number, as
//! the kernel's bit masks (`CapEff` in /proc, `capset`'s two 32-bit words).

use std::fmt;

use serde::{Serialize, Serializer};

/// One Linux capability (`man 7 capabilities`), by its kernel number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Capability(u8);

/// Names indexed by number, without the `CAP_` prefix.
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

impl Capability {
    /// Read files and list directories whatever their permissions
    /// (e.g. /sys/kernel/tracing when it is root-only).
    pub const DAC_READ_SEARCH: Capability = Capability(2);
    /// Change the capability bounding set (only needed to drop the others).
    pub const SETPCAP: Capability = Capability(8);
    /// Network administration: loading and attaching cgroup_skb and
    /// cgroup/sock eBPF programs.
    pub const NET_ADMIN: Capability = Capability(12);
    /// Inspect other processes: `/proc/PID/exe`, `/proc/PID/maps`,
    /// `/proc/PID/mem` of processes of other users or with more privileges.
    pub const SYS_PTRACE: Capability = Capability(19);
    /// Everything else; before Linux 5.8 also what `BPF` and `PERFMON` allow.
    pub const SYS_ADMIN: Capability = Capability(21);
    /// Raise RLIMIT_MEMLOCK (eBPF maps before Linux 5.11 are charged to it).
    pub const SYS_RESOURCE: Capability = Capability(24);
    /// Read kernel addresses in /proc/kallsyms when perf_event_paranoid > 1
    /// (Debian's default), to name kernel frames.
    pub const SYSLOG: Capability = Capability(34);
    /// perf events and tracing eBPF programs (kprobes, tracepoints) (Linux 5.8+).
    pub const PERFMON: Capability = Capability(38);
    /// Load eBPF programs and create maps (Linux 5.8+).
    pub const BPF: Capability = Capability(39);

    /// The capability numbered `number`.
    pub const fn from_number(number: u8) -> Capability {
        Capability(number)
    }

    /// Its kernel number.
    pub const fn number(self) -> u8 {
        self.0
    }

    /// Its name without `CAP_` (`BPF`), or the number if this build does not know it.
    pub fn name(self) -> String {
        NAMES
            .get(usize::from(self.0))
            .map_or_else(|| format!("CAP_{}", self.0), |n| (*n).to_string())
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A set of capabilities: bit `n` is capability `n`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapabilitySet(u64);

impl CapabilitySet {
    /// No capability.
    pub const EMPTY: CapabilitySet = CapabilitySet(0);

    /// The set of `caps` (usable in constants).
    pub const fn of(caps: &[Capability]) -> CapabilitySet {
        let mut bits = 0u64;
        let mut i = 0;
        while i < caps.len() {
            bits |= 1 << caps[i].0;
            i += 1;
        }
        CapabilitySet(bits)
    }

    /// Capabilities 0 through `last` (every one the kernel knows).
    pub const fn up_to(last: u8) -> CapabilitySet {
        if last >= 63 {
            CapabilitySet(u64::MAX)
        } else {
            CapabilitySet((1u64 << (last + 1)) - 1)
        }
    }

    /// From a kernel bit mask.
    pub const fn from_bits(bits: u64) -> CapabilitySet {
        CapabilitySet(bits)
    }

    /// The kernel bit mask.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether `cap` is in the set.
    pub const fn contains(self, cap: Capability) -> bool {
        self.0 & (1 << cap.0) != 0
    }

    /// Both sets' capabilities.
    pub const fn union(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 | other.0)
    }

    /// Capabilities in both.
    pub const fn intersection(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 & other.0)
    }

    /// Capabilities in `self` but not `other`.
    pub const fn difference(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 & !other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The capabilities, lowest number first.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        (0..64u8).filter(move |n| self.0 & (1 << n) != 0).map(Capability)
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<String> = self.iter().map(Capability::name).collect();
        f.write_str(&names.join(", "))
    }
}

impl Serialize for CapabilitySet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Capability::name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_names() {
        let set = CapabilitySet::of(&[Capability::BPF, Capability::PERFMON]);
        assert_eq!(set.to_string(), "PERFMON, BPF");
        assert!(set.contains(Capability::BPF));
        assert_eq!(set.bits(), (1 << 38) | (1 << 39));
        assert_eq!(CapabilitySet::up_to(40).iter().count(), 41);
        assert_eq!(Capability::from_number(50).name(), "CAP_50");
        assert_eq!(serde_json::to_string(&set).unwrap(), r#"["PERFMON","BPF"]"#);
    }
}
