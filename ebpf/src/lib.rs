//! sonde-ebpf: the generic machinery every eBPF source uses. The sources'
//! own programs, loaders and Rust mirrors live in their folders
//! (`sources/src/<source>/bpf/`); only what they share is here.
//!
//! - `bpf/include/*.h`: headers every source's C includes (`sonde_slot.h`,
//!   the log2 histogram slot rule; `sonde_sock.h`, socket tuples),
//!   exported to the sources' build script through `links`
//!   (`DEP_SONDE_EBPF_INCLUDE`); their objects are compiled by
//!   `sonde-ebpf-build`.
//! - [`loader`]: loads an object against the running kernel's BTF, attaches
//!   programs, hands out typed maps, names the program, map and attach point
//!   in every error ([`LoadError`]).
//! - [`system`]: mounts tracefs and bpffs when missing, raises
//!   `RLIMIT_MEMLOCK` on kernels that charge BPF memory to it (< 5.11).
//! - [`probe`], [`caps`]: kernel facts and attach trials for `sonde doctor`.
//! - [`telemetry`]: `sonde_ebpf_*` internal metrics (lost events, full maps,
//!   failed reads), exported from each program's stats array by one table.
//! - [`slot`]: the bucket bounds of `sonde_slot.h`'s histograms.
//! - [`conformance`]: what a source's kernel check returns.
//! - [`owners`]: who owns the TCP listeners that predate the programs;
//!   [`cgroup`]: where the cgroup v2 root is (mounting one if needed).
//! - [`stats`]: kernel-measured run time of programs, for benchmarks.
//! - [`testing`], [`btf_layout`], [`loss`], [`workload`]: test support
//!   (skip-or-fail, loop devices, struct layouts from an object's BTF, a
//!   packet dropper, a busy loop of known name).
//!
//! Minimum kernel for everything here: 5.5 (BTF in sysfs,
//! `bpf_probe_read_kernel`); each source states its own.

pub mod btf_layout;
pub mod caps;
pub mod cgroup;
pub mod conformance;
pub mod error;
pub mod loader;
pub mod loss;
pub mod owners;
pub mod probe;
pub mod slot;
pub mod stats;
pub mod system;
pub mod telemetry;
pub mod testing;
pub mod workload;

/// aya, for sources that need its types beyond what this crate wraps.
pub use aya;
/// aya's object parser, for sources that read the kernel's BTF types.
pub use aya_obj;
pub use conformance::CheckError;
pub use error::{LoadError, ReadError};
pub use loader::Object;

/// Whether programs built on `bpf/include/sonde_args.h` (a syscall's
/// arguments read at its exit from the task's entry registers) can load:
/// the kernel lets tracepoint programs call `bpf_task_pt_regs` (5.15+) and
/// the header knows this architecture's registers (x86-64, arm64).
pub fn args_at_exit() -> bool {
    use aya::programs::ProgramType;
    use aya::sys::{is_helper_supported, BpfHelper};
    cfg!(any(target_arch = "x86_64", target_arch = "aarch64"))
        && matches!(
            is_helper_supported(ProgramType::TracePoint, BpfHelper::BPF_FUNC_task_pt_regs),
            Ok(true)
        )
}

/// The generic eBPF objects, embedded in the binary.
pub mod objects {
    /// `bpf/loss.bpf.c`: a packet dropper for tests.
    pub static LOSS: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/loss.bpf.o"));
    /// `bpf/probes.bpf.c`: empty programs of each attach type, for `sonde doctor`.
    pub static PROBES: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probes.bpf.o"));
}
