//! Least privilege: after the pipeline is built (eBPF programs loaded and
//! attached), the agent keeps only the Linux capabilities its configured
//! components declare, in every thread, and gives up the means to regain
//! the others.
//!
//! Each component type declares what it needs with
//! [`SourceConfig::capabilities`](crate::SourceConfig::capabilities) (and
//! the transform and sink equivalents). The declaration covers building
//! *and* running the component, because a SIGHUP reload rebuilds changed
//! components in the same process: an eBPF source keeps `BPF` and
//! `PERFMON` so that it can be reloaded, while a pipeline of `demo`,
//! `filter` and `file` keeps nothing. A reload that needs a capability
//! given up is refused with the list of what is missing (restart the
//! agent instead), and the running pipeline is left as it is.
//!
//! What dropping does, per thread (capabilities are per-thread state in
//! Linux, so every thread the runtime started must do it; see [`thread`]):
//! 1. removes every other capability from the bounding set (needs
//!    `SETPCAP`, so first), so no `execve` can bring them back;
//! 2. clears the ambient set;
//! 3. sets the effective and permitted sets to the kept ones and the
//!    inheritable set to nothing (`capset`);
//! 4. sets `no_new_privs`, so setuid binaries and file capabilities
//!    cannot raise privileges either.
//!
//! `CAP_BPF` and `CAP_PERFMON` exist from Linux 5.8; before, `SYS_ADMIN`
//! stands for both and is kept instead.

pub mod thread;

// The set type lives below `component` (whose traits return it); it is
// re-exported here, where component crates have always found it.
pub use crate::capability::{Capability, CapabilitySet};

use std::path::Path;

use crate::config::PipelineConfig;
use crate::event::SharedStr;
use crate::registry::AnyConfig;

/// Why capabilities could not be dropped.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// A /proc file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A system call failed in the calling thread.
    #[error("{call} failed: {source}")]
    Syscall {
        /// Which call.
        call: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// Some threads still hold more than the kept capabilities.
    #[error("{} thread(s) still hold capabilities beyond {kept}: {}", .threads.len(),
        .threads.iter().map(|(tid, set)| format!("{tid}: {set}")).collect::<Vec<_>>().join(", "))]
    Incomplete {
        /// What should have remained.
        kept: CapabilitySet,
        /// Each thread id with its effective set.
        threads: Vec<(u32, CapabilitySet)>,
    },
}

/// What each component of a pipeline needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// (component id, its declared capabilities), in config order.
    pub components: Vec<(SharedStr, CapabilitySet)>,
}

impl Needs {
    /// The declarations of every component of `config`.
    pub fn of(config: &PipelineConfig) -> Self {
        let components = config
            .components
            .iter()
            .map(|c| {
                let set = match &c.options {
                    AnyConfig::Source(s) => s.capabilities(),
                    AnyConfig::Transform(t) => t.capabilities(),
                    AnyConfig::Sink(s) => s.capabilities(),
                };
                (c.id.clone(), set)
            })
            .collect();
        Needs { components }
    }

    /// Everything any component needs.
    pub fn total(&self) -> CapabilitySet {
        self.components
            .iter()
            .fold(CapabilitySet::EMPTY, |all, (_, set)| all.union(*set))
    }
}

/// One thread's capability sets, as /proc shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadCapabilities {
    /// `CapEff`: what the thread can do now.
    pub effective: CapabilitySet,
    /// `CapPrm`: what it may make effective.
    pub permitted: CapabilitySet,
    /// `CapBnd`: the ceiling for anything it executes.
    pub bounding: CapabilitySet,
    /// `CapAmb`: what survives `execve` of an unprivileged program.
    pub ambient: CapabilitySet,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
}

impl ThreadCapabilities {
    /// Parses a `/proc/…/status` file.
    pub fn read(path: &Path) -> Result<Self, PrivilegeError> {
        let text = std::fs::read_to_string(path).map_err(|source| PrivilegeError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        let set = |name: &str| CapabilitySet::from_bits(u64::from_str_radix(&field(name), 16).unwrap_or(0));
        Ok(ThreadCapabilities {
            effective: set("CapEff:"),
            permitted: set("CapPrm:"),
            bounding: set("CapBnd:"),
            ambient: set("CapAmb:"),
            no_new_privs: field("NoNewPrivs:") == "1",
        })
    }

    /// The calling thread's sets: what `sonde doctor` reports as "has".
    pub fn current() -> Result<Self, PrivilegeError> {
        Self::read(Path::new("/proc/thread-self/status"))
    }
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(Capability::SYS_ADMIN.number().max(37))
}

/// `wanted` as this kernel understands it: before 5.8 (no `CAP_BPF`),
/// `SYS_ADMIN` stands for `BPF` and `PERFMON`.
pub fn for_kernel(wanted: CapabilitySet, last_cap: u8) -> CapabilitySet {
    let modern = CapabilitySet::of(&[Capability::BPF, Capability::PERFMON]);
    if last_cap < Capability::BPF.number() && !wanted.intersection(modern).is_empty() {
        wanted
            .difference(modern)
            .union(CapabilitySet::of(&[Capability::SYS_ADMIN]))
    } else {
        wanted.intersection(CapabilitySet::up_to(last_cap))
    }
}

/// What [`restrict`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restricted {
    /// The capabilities every thread holds now.
    pub kept: CapabilitySet,
    /// Those that were given up.
    pub dropped: CapabilitySet,
    /// Threads told to drop (the caller's included).
    pub threads: usize,
}

/// Keeps only `needed` (adapted with [`for_kernel`], and only those the
/// process has) in every thread of the process, then checks every thread.
pub fn restrict(needed: CapabilitySet) -> Result<Restricted, PrivilegeError> {
    let before = ThreadCapabilities::current()?;
    let keep = for_kernel(needed, last_cap()).intersection(before.permitted);
    if before.permitted.is_empty() {
        // Not root and no file capabilities: nothing to give up.
        return Ok(Restricted {
            kept: keep,
            dropped: CapabilitySet::EMPTY,
            threads: 0,
        });
    }
    let drop_bounding = before.effective.contains(Capability::SETPCAP);
    let threads = thread::apply_everywhere(keep, last_cap(), drop_bounding)?;
    let mut stuck = Vec::new();
    for tid in thread::list()? {
        match ThreadCapabilities::read(&Path::new("/proc/self/task").join(tid.to_string()).join("status")) {
            Ok(caps) if caps.permitted.difference(keep).is_empty() => {}
            Ok(caps) => stuck.push((tid, caps.permitted)),
            // The thread exited since it was listed.
            Err(_) => {}
        }
    }
    if !stuck.is_empty() {
        return Err(PrivilegeError::Incomplete {
            kept: keep,
            threads: stuck,
        });
    }
    Ok(Restricted {
        kept: keep,
        dropped: before.permitted.difference(keep),
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_kernels_use_sys_admin_for_bpf() {
        let wanted = CapabilitySet::of(&[Capability::BPF, Capability::SYS_PTRACE]);
        assert_eq!(
            for_kernel(wanted, 37),
            CapabilitySet::of(&[Capability::SYS_ADMIN, Capability::SYS_PTRACE])
        );
        assert_eq!(for_kernel(wanted, 40), wanted);
    }

    #[test]
    fn reads_status_files() {
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status");
        std::fs::write(
            &status,
            "Name:\tsonde\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
             CapEff:\t0000000000200000\nCapBnd:\t000000c000000000\nCapAmb:\t0000000000000001\n\
             NoNewPrivs:\t1\n",
        )
        .unwrap();
        let caps = ThreadCapabilities::read(&status).unwrap();
        assert_eq!(caps.permitted.bits(), 0x1ff_ffff_ffff);
        assert_eq!(caps.effective, CapabilitySet::of(&[Capability::SYS_ADMIN]));
        assert_eq!(
            caps.bounding,
            CapabilitySet::of(&[Capability::PERFMON, Capability::BPF])
        );
        assert_eq!(caps.ambient.bits(), 1);
        assert!(caps.no_new_privs);
        // The calling thread's own file parses too: what it may make
        // effective holds what is.
        let me = ThreadCapabilities::current().unwrap();
        assert!(me.effective.difference(me.permitted).is_empty());
    }
}
