//! The loaded programs and what turns their records into `file.open` log
//! records and their counters into metrics.

use sonde_core::event::{keys, Attributes, Event, Log, Metric, Severity, SharedStr, Timestamp};
use sonde_core::topology::component_metrics;
use sonde_core::SourceContext;
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{
    comm_str, FaEvent, FileAccessPrograms, Policy, DROPPED, FA_OP_CREAT, FA_OP_OPEN, FA_OP_OPENAT, MAP_PENDING, OBJECT,
    STATS,
};
use super::config::FileAccessSourceConfig;
use crate::clock::Clock;

/// The log record's name.
pub const FILE_OPEN: &str = "file.open";
/// Counter of opens not reported, by `reason`.
pub const DROPPED_TOTAL: &str = "sonde.file_access.dropped";
/// Field: the opened file's absolute path (a failed open: as requested).
pub const PATH: &str = "file.path";
/// Field: what the open asked for (`write,create`).
pub const ACCESS: &str = "sonde.file.access";
/// Field: the open flags, as passed.
pub const OPEN_FLAGS: &str = "sonde.file.open_flags";
/// Field: the call (`openat`).
pub const SYSCALL: &str = "sonde.syscall";
/// Field: the fd returned.
pub const FD: &str = "sonde.file.fd";
/// Field: a failed open's error (`ENOENT`).
pub const ERROR: &str = "error.type";

/// The programs, the node's name, and the loss counters.
#[derive(Debug)]
pub struct Collector {
    programs: FileAccessPrograms,
    node: SharedStr,
    telemetry: LossCounters,
}

impl Collector {
    /// Loads the programs with the configured policy.
    pub fn load(config: &FileAccessSourceConfig, node: SharedStr, cx: &SourceContext) -> Result<Self, LoadError> {
        Self::load_with_labels(config, node, &component_metrics::labels(&cx.info))
    }

    /// [`Collector::load`] outside a pipeline (tests, the kernel check).
    pub fn load_with_labels(
        config: &FileAccessSourceConfig,
        node: SharedStr,
        labels: &[metrics::Label],
    ) -> Result<Self, LoadError> {
        let policy = Policy {
            path_prefixes: config
                .matching
                .path_prefix
                .iter()
                .map(|p| {
                    let trimmed = p.trim_end_matches('/');
                    if trimmed.is_empty() {
                        "/".to_string()
                    } else {
                        trimmed.to_string()
                    }
                })
                .collect(),
            access: config.access_bits(),
            binaries: config.matching.binary.clone(),
            cgroups: sonde_ebpf::cgroup::v2_ids(&config.matching.cgroup, OBJECT, "enter_openat")?,
            failed: config.failed,
            dedup_ns: config.dedup_window.as_nanos() as u64,
            rate_per_sec: config.rate_limit,
            exclude_pid: if config.include_self { 0 } else { std::process::id() },
        };
        Ok(Collector {
            programs: FileAccessPrograms::load(&policy)?,
            node,
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_PENDING),
        })
    }

    /// The programs (their ring buffer, their statistics).
    pub fn programs_mut(&mut self) -> &mut FileAccessPrograms {
        &mut self.programs
    }

    /// The log record of one reported open.
    pub fn record(&self, e: &FaEvent, clock: &Clock) -> Event {
        let mut attributes = Attributes::new().with(keys::PID, e.pid).with("thread.id", e.tid);
        let comm = comm_str(&e.comm);
        if !comm.is_empty() {
            attributes.insert(keys::COMM, comm.clone());
        }
        if e.cgroup_id != 0 {
            attributes.insert(keys::CGROUP_ID, e.cgroup_id);
        }
        attributes.insert("process.user.id", i64::from(e.uid));
        attributes.insert(keys::node(), self.node.clone());
        let path = e.path();
        let mut fields = Attributes::new()
            .with(PATH, path.clone())
            .with(ACCESS, e.access_names().join(","))
            .with(OPEN_FLAGS, e.open_flags)
            .with(SYSCALL, syscall_name(e.op));
        let mut log = Log::new(FILE_OPEN);
        if e.ret >= 0 {
            fields.insert(FD, i64::from(e.ret));
            log = log.with_message(format!("{comm} opened {path}"));
        } else {
            let error = errno_name(-e.ret);
            fields.insert(ERROR, error.clone());
            log = log
                .with_severity(Severity::Warn)
                .with_message(format!("{comm} failed to open {path}: {error}"));
        }
        log.fields = fields;
        log.attributes = attributes;
        log.timestamp = clock.wall(e.mono_ns);
        Event::from(log)
    }

    /// The counters of opens left out, by reason; and the loss counters.
    pub fn counters(&mut self) -> Result<Vec<Event>, ReadError> {
        let stats = self.programs.stats()?;
        self.telemetry.observe(&stats);
        let now = Timestamp::now();
        Ok(DROPPED
            .iter()
            .map(|(slot, reason)| {
                Event::from(
                    Metric::counter(DROPPED_TOTAL, stats.get(*slot) as f64)
                        .with_description("File opens not reported, by reason: filtered by the policy in the kernel, deduplicated or throttled.")
                        .with_unit("{open}")
                        .with_attributes(
                            Attributes::new()
                                .with("reason", *reason)
                                .with(keys::node(), self.node.clone()),
                        )
                        .with_timestamp(now),
                )
            })
            .collect())
    }
}

fn syscall_name(op: u32) -> &'static str {
    match op {
        FA_OP_OPEN => "open",
        FA_OP_OPENAT => "openat",
        FA_OP_CREAT => "creat",
        _ => "openat2",
    }
}

/// The symbolic name of an errno (`ENOENT`), else `E<number>`.
pub fn errno_name(errno: i32) -> String {
    let name = match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::EROFS => "EROFS",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENXIO => "ENXIO",
        libc::ENODEV => "ENODEV",
        libc::EBUSY => "EBUSY",
        libc::EFAULT => "EFAULT",
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EAGAIN => "EAGAIN",
        libc::EINTR => "EINTR",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("E{errno}"),
    };
    name.to_string()
}

/// Records turned into events per batch at most: under a connection storm
/// the ring buffer holds tens of thousands, and building them all at once
/// held them all in memory at once (~1.5 KiB each with their attributes).
pub const DRAIN_LIMIT: usize = 1024;

/// Reads every record waiting in `ring`.
pub fn drain(ring: &mut sonde_ebpf::aya::maps::RingBuf<sonde_ebpf::aya::maps::MapData>) -> Vec<FaEvent> {
    drain_some(ring, usize::MAX).0
}

/// Reads at most `limit` records from `ring`; and whether it stopped at
/// the limit (more may wait).
pub fn drain_some(
    ring: &mut sonde_ebpf::aya::maps::RingBuf<sonde_ebpf::aya::maps::MapData>,
    limit: usize,
) -> (Vec<FaEvent>, bool) {
    let mut out = Vec::new();
    let mut read = 0;
    while read < limit {
        let Some(record) = ring.next() else {
            return (out, false);
        };
        out.extend(FaEvent::from_bytes(&record));
        read += 1;
    }
    (out, true)
}
