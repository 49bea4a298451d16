//! The `file_access` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::bpf::{
    FA_CREATE, FA_MAX_BINARIES, FA_MAX_CGROUPS, FA_MAX_PREFIXES, FA_PREFIX_LEN, FA_READ, FA_TRUNCATE, FA_WRITE,
};

/// The `flags` names and their bits.
pub const FLAGS: [(&str, u32); 4] = [
    ("read", FA_READ),
    ("write", FA_WRITE),
    ("create", FA_CREATE),
    ("truncate", FA_TRUNCATE),
];

const fn default_true() -> bool {
    true
}
const fn default_dedup() -> Duration {
    Duration::from_secs(1)
}
const fn default_rate() -> u32 {
    1000
}
const fn default_interval() -> Duration {
    Duration::from_secs(10)
}

/// Which opens are reported; every filter is applied in the kernel, and
/// the opens left out are counted by reason
/// (`sonde_file_access_dropped_total{reason}`), never sent to user space.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Absolute paths of directories (or files): an open of one of them or
    /// of anything below is reported (`/etc` and `/etc/` mean the same).
    /// Matched by the opened file's identity, so relative names, symlinks
    /// and directory fds resolve; failed opens are matched by the name
    /// they asked for. At most 8, each at most 64 bytes; a path that does
    /// not exist when the source starts matches failed opens only. Empty:
    /// every path.
    #[serde(default)]
    pub path_prefix: Vec<String>,
    /// Opens asking for any of: `read`, `write`, `create`, `truncate`
    /// (from the open flags: O_RDONLY/O_RDWR, O_WRONLY/O_RDWR, O_CREAT,
    /// O_TRUNC). Empty: any.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Processes by name (`comm`, at most 15 bytes: `nginx`). At most 64.
    /// Empty: any process.
    #[serde(default)]
    pub binary: Vec<String>,
    /// Cgroups by path under the cgroup v2 root
    /// (`/system.slice/nginx.service`); processes directly in them. At most
    /// 256. Empty: any cgroup.
    #[serde(default)]
    pub cgroup: Vec<String>,
}

/// An audit of file opens: `open`, `openat`, `openat2` and `creat`, from
/// syscall tracepoints, each reported as a `file.open` log record (process,
/// cgroup, user, the absolute path of the file opened, what the flags ask
/// for, the fd or the error), filtered in the kernel by `match`,
/// deduplicated per (process, file, flags) and rate-limited per cgroup.
/// Not seen: opens through io_uring (`IORING_OP_OPENAT`), and files reached
/// without an open (inherited fds, `SCM_RIGHTS`, mmap of an already open
/// file).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileAccessSourceConfig {
    /// What to report.
    #[serde(default, rename = "match")]
    pub matching: Match,
    /// Report opens that failed (with the name asked for and the error).
    /// Default `true`.
    #[serde(default = "default_true")]
    pub failed: bool,
    /// A process opening the same file with the same flags again within
    /// this window is counted (`reason="deduplicated"`), not reported.
    /// `0s` reports every open. Default `1s`.
    #[serde(default = "default_dedup", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub dedup_window: Duration,
    /// At most this many records per second per cgroup; the rest are
    /// counted (`reason="throttled"`). 0: no limit. Default 1000.
    #[serde(default = "default_rate")]
    pub rate_limit: u32,
    /// Report the agent's own opens too. Default `false`.
    #[serde(default)]
    pub include_self: bool,
    /// Time between two emissions of the dropped counters. Default `10s`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
}

impl Default for FileAccessSourceConfig {
    fn default() -> Self {
        FileAccessSourceConfig {
            matching: Match::default(),
            failed: true,
            dedup_window: default_dedup(),
            rate_limit: default_rate(),
            include_self: false,
            interval: default_interval(),
        }
    }
}

impl FileAccessSourceConfig {
    /// The `flags` as kernel bits (unknown names were refused by validate).
    pub fn access_bits(&self) -> u32 {
        self.matching
            .flags
            .iter()
            .filter_map(|f| FLAGS.iter().find(|(name, _)| name == f).map(|(_, bit)| bit))
            .fold(0, |bits, bit| bits | bit)
    }
}

impl SourceType for FileAccessSourceConfig {
    const NAME: &'static str = "file_access";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 8),
        attach_points: &[
            "tracepoint syscalls:sys_enter/exit_{open,openat,openat2,creat}",
            "not seen: io_uring opens, fds received or inherited",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for FileAccessSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::LOG.union(EventKinds::METRIC)
    }

    /// CAP_BPF and CAP_PERFMON load and attach the programs;
    /// CAP_DAC_READ_SEARCH reads tracepoint ids in tracefs and finds the
    /// policy's paths and cgroups.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[Capability::BPF, Capability::PERFMON, Capability::DAC_READ_SEARCH])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        let m = &self.matching;
        check
            .that(
                m.path_prefix.len() <= FA_MAX_PREFIXES as usize,
                "match.path_prefix",
                "at most 8 paths",
            )
            .that(
                m.path_prefix
                    .iter()
                    .all(|p| p.starts_with('/') && p.len() <= FA_PREFIX_LEN as usize),
                "match.path_prefix",
                "absolute paths of at most 64 bytes",
            )
            .that(
                m.flags.iter().all(|f| FLAGS.iter().any(|(name, _)| name == f)),
                "match.flags",
                "each one of: read, write, create, truncate",
            )
            .that(
                m.binary.len() <= FA_MAX_BINARIES as usize,
                "match.binary",
                "at most 64 names",
            )
            .that(
                m.cgroup.len() <= FA_MAX_CGROUPS as usize,
                "match.cgroup",
                "at most 256 cgroups",
            );
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        let collector = super::collect::Collector::load(self, cx.global.node_name.clone(), &cx)?;
        Ok(Box::pin(super::run::run(collector, self.interval, cx)))
    }
}
