//! The collector: loads the programs, reads what predates them from
//! `/proc`, turns records into events through the ancestry cache, and
//! counts execs.

use std::path::{Path, PathBuf};

use metrics::{Counter, Label};
use sonde_core::event::{Event, SharedStr, Timestamp};
use sonde_ebpf::telemetry::{with_label, LossCounters, LOST_EVENTS};
use sonde_ebpf::LoadError;

use super::ancestry::{Ancestry, Identity, Reported};
use super::bpf::{comm_str, Options, ProcHead, ProcessPrograms, Record, Records, MAP_EVENTS, OBJECT, STATS};
use super::config::ProcessSourceConfig;
use super::events::{exec_log, exit_log, process_log, FORK};
use super::metrics::ExecCounts;
use crate::clock::Clock;

/// Records handled per drain at most, so one drain cannot starve the rest
/// of the agent; more wait for the next.
pub const DRAIN_LIMIT: usize = 8192;

/// `CLOCK_BOOTTIME` now, ns: the clock of `bpf_ktime_get_boot_ns()` and of
/// a task's `start_boottime`.
pub fn boottime_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists since 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// The programs and what turns their records into events.
#[derive(Debug)]
pub struct Collector {
    programs: ProcessPrograms,
    ancestry: Ancestry,
    counts: ExecCounts,
    depth: usize,
    forks: bool,
    node: SharedStr,
    /// Configured cgroup filters and the v2 root, to add new descendants.
    cgroup_filter: Option<(PathBuf, Vec<String>)>,
    telemetry: LossCounters,
    malformed: Counter,
}

impl Collector {
    /// Loads and attaches the programs, then reads the processes that
    /// already run from `/proc`. Returns the records' ring, which the run
    /// loop polls.
    pub fn load(config: &ProcessSourceConfig, node: SharedStr, labels: &[Label]) -> Result<(Self, Records), LoadError> {
        let cgroup_filter = if config.cgroups.is_empty() {
            None
        } else {
            let root = sonde_ebpf::cgroup::cgroup2_root().map_err(|e| LoadError::Attach {
                object: OBJECT,
                program: "process_exec",
                attach_point: "the cgroup v2 hierarchy (for `cgroups`)".to_string(),
                source: Box::new(e.into()),
            })?;
            Some((root, config.cgroups.clone()))
        };
        let cgroups = cgroup_filter
            .as_ref()
            .map(|(root, paths)| cgroup_ids(root, paths))
            .unwrap_or_default();
        if cgroup_filter.is_some() && cgroups.is_empty() {
            tracing::warn!(cgroups = ?config.cgroups, "process: none of the configured cgroups exists (yet)");
        }
        let mut programs = ProcessPrograms::load(&Options {
            args_max: config.max_args_bytes,
            forks: config.fork,
            // An empty set would let everything through: a cgroup id that
            // cannot exist stands in until one appears.
            cgroups: if cgroup_filter.is_some() && cgroups.is_empty() {
                vec![u64::MAX]
            } else {
                cgroups
            },
            binaries: config.binaries.clone(),
            exclude_binaries: config.exclude_binaries.clone(),
            rate_limit: config.rate_limit,
            max_processes: config.max_processes,
            ring_bytes: config.ring_buffer_bytes,
        })?;
        let records = programs.take_records().expect("the ring is taken once");
        let mut ancestry = Ancestry::new(node.clone(), config.cache_size, Path::new("/proc"));
        // After the attach: a process that execs meanwhile is also reported.
        let known = ancestry.bootstrap();
        // Other sources (`connections`) name processes as this one does.
        ancestry.publish();
        tracing::debug!(processes = known, "process: read /proc");
        let collector = Collector {
            programs,
            ancestry,
            counts: ExecCounts::new(config.max_exec_series),
            depth: config.ancestry_depth,
            forks: config.fork,
            node,
            cgroup_filter,
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_EVENTS),
            malformed: metrics::counter!(
                LOST_EVENTS,
                with_label(&with_label(labels, "object", OBJECT), "reason", "malformed")
            ),
        };
        Ok((collector, records))
    }

    /// The events of the records waiting now; also whether more wait.
    pub fn drain(&mut self, records: &mut Records) -> (Vec<Event>, bool) {
        let clock = Clock::at(Timestamp::now(), boottime_ns());
        let wall = |ns: u64| clock.wall(ns);
        let mut events = Vec::new();
        let (read, malformed) = records.drain(DRAIN_LIMIT, |record| {
            if let Some(event) = self.handle(record, &wall) {
                events.push(event);
            }
        });
        if malformed > 0 {
            self.malformed.increment(malformed as u64);
        }
        (events, read == DRAIN_LIMIT)
    }

    fn handle(&mut self, record: Record, wall: &impl Fn(u64) -> Timestamp) -> Option<Event> {
        match record {
            Record::Exec(exec) => {
                let reported = Reported {
                    binary: exec.exe.clone().into(),
                    ..reported(&exec.fixed.head)
                };
                let process = self.ancestry.exec(&reported);
                self.counts.add(&process.binary, process.cgroup_id);
                Some(Event::from(exec_log(&exec, &process, self.depth, &self.node, wall)))
            }
            Record::Fork(head) => {
                let process = self.ancestry.fork(&reported(&head));
                self.forks
                    .then(|| Event::from(process_log(FORK, &process, self.depth, &self.node, wall(head.time_ns))))
            }
            Record::Exit(exit) => {
                let process = self.ancestry.exit(&reported(&exit.head));
                Some(Event::from(exit_log(&exit, &process, self.depth, &self.node, wall)))
            }
        }
    }

    /// This interval's metrics (exec counts, throttled execs); also
    /// exports the loss counters and adds new descendants of the filtered
    /// cgroups.
    pub fn metrics(&mut self, now: Timestamp) -> Vec<Event> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read process loss counters");
            }
        }
        if let Some((root, paths)) = &self.cgroup_filter {
            for id in cgroup_ids(root, paths) {
                if let Err(error) = self.programs.add_cgroup(id) {
                    tracing::warn!(%error, "cannot add a cgroup to the process filter");
                }
            }
        }
        let throttled = self.programs.throttled().unwrap_or_else(|error| {
            self.telemetry.map_read_failed();
            tracing::warn!(%error, "cannot read process rate windows");
            Vec::new()
        });
        self.counts.events(&throttled, &self.node, now)
    }

    /// The ancestry cache (for tests and other sources' lookups).
    pub fn ancestry(&mut self) -> &mut Ancestry {
        &mut self.ancestry
    }

    /// The loaded programs (for their statistics, and tests).
    pub fn programs(&self) -> &ProcessPrograms {
        &self.programs
    }
}

/// What a record says about its process and parent.
fn reported(head: &ProcHead) -> Reported {
    Reported {
        id: Identity {
            pid: head.pid,
            key_ns: head.key.key_ns,
            start_ns: head.start_ns,
        },
        parent: Identity {
            pid: head.key.ppid,
            key_ns: head.key.parent_key_ns,
            start_ns: head.key.parent_start_ns,
        },
        binary: SharedStr::default(),
        name: comm_str(&head.comm).into(),
        cgroup_id: head.cgroup_id,
    }
}

/// The ids of cgroups `paths` (under `root`) and of all their descendants.
pub fn cgroup_ids(root: &Path, paths: &[String]) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().map(|p| root.join(p.trim_start_matches('/'))).collect();
    while let Some(dir) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else { continue };
        out.push(meta.ino());
        if let Ok(entries) = std::fs::read_dir(&dir) {
            stack.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}
