//! The `file_io` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::polling::{run_every, Rounds};
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::topology::component_metrics;
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::collect::Collector;

/// Default time between two emissions.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default number of (process, file) pairs reported under their path.
pub const DEFAULT_TOP_FILES: usize = 100;
/// Default capacity of the kernel's (process, file) map.
pub const DEFAULT_MAX_FILES: u32 = super::bpf::FIO_MAX_FILES;

const fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}
const fn default_top_files() -> usize {
    DEFAULT_TOP_FILES
}
const fn default_max_files() -> u32 {
    DEFAULT_MAX_FILES
}

/// File I/O per process and file: reads (`read`, `pread64`, `readv`,
/// `preadv`, `preadv2`), writes (the same five) and syncs (`fsync`,
/// `fdatasync`) of regular files, timed from syscall tracepoints and added
/// up in the kernel per process and file (device and inode): bytes, calls,
/// failures and a latency histogram per operation. The `top_files` pairs
/// with the most bytes are reported under their path, each process' other
/// files together under `file.path="[other]"`. Not seen: I/O through
/// memory mappings, io_uring, POSIX AIO, and `sendfile`/`splice`/
/// `copy_file_range` (the page cache is filled without a read call).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileIoSourceConfig {
    /// Time between two emissions. Default `10s`. At least `100ms`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
    /// Report this many (process, file) pairs, those with the most bytes,
    /// under their path; the rest of each process' files are summed under
    /// `[other]`. Default 100.
    #[serde(default = "default_top_files")]
    pub top_files: usize,
    /// Capacity of the kernel's map of (process, file) pairs in use (about
    /// 560 bytes each, preallocated). Pairs that stay idle outside the top
    /// leave it each interval; when it is full, calls on new pairs are not
    /// counted and `sonde_ebpf_map_full_total` counts them. Default 4096.
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// Count only these processes (by pid, filtered in the kernel; their
    /// children are not included). Default: every process.
    #[serde(default)]
    pub pids: Vec<u32>,
    /// Count the agent's own file I/O too (its file sink, for one).
    /// Default `false`.
    #[serde(default)]
    pub include_self: bool,
}

impl Default for FileIoSourceConfig {
    fn default() -> Self {
        FileIoSourceConfig {
            interval: DEFAULT_INTERVAL,
            top_files: DEFAULT_TOP_FILES,
            max_files: DEFAULT_MAX_FILES,
            pids: Vec::new(),
            include_self: false,
        }
    }
}

impl SourceType for FileIoSourceConfig {
    const NAME: &'static str = "file_io";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 8),
        attach_points: &[
            "tracepoint syscalls:sys_enter/exit_{read,pread64,readv,preadv,preadv2}",
            "tracepoint syscalls:sys_enter/exit_{write,pwrite64,writev,pwritev,pwritev2}",
            "tracepoint syscalls:sys_enter/exit_{fsync,fdatasync}",
            "not seen: mmap'd file I/O, io_uring, POSIX AIO, sendfile/splice/copy_file_range",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for FileIoSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::METRIC
    }

    /// CAP_BPF and CAP_PERFMON load and attach the programs;
    /// CAP_DAC_READ_SEARCH reads tracepoint ids in tracefs; CAP_SYS_PTRACE
    /// reads other processes' `/proc/PID/fd` links (the files' paths).
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[
            Capability::BPF,
            Capability::PERFMON,
            Capability::DAC_READ_SEARCH,
            Capability::SYS_PTRACE,
        ])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        check.that(self.max_files > 0, "max_files", "must be at least 1").that(
            self.top_files > 0,
            "top_files",
            "must be at least 1",
        );
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        let labels = component_metrics::labels(&cx.info);
        let collector = Collector::load(self, cx.global.node_name.clone(), &labels)?;
        Ok(Box::pin(run_every(collector, self.interval, Rounds::Blocking, cx)))
    }
}
