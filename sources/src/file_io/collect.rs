//! One round: read the per-(process, file) totals and turn them into
//! metrics — the `top_files` pairs by bytes under their paths, the rest of
//! each process' files summed under `file.path="[other]"`, so that sums
//! over a process stay exact while the series count stays bounded.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use metrics::Label;
use sonde_core::event::{keys, Attributes, Event, Histogram, Metric, SharedStr, Temporality, Timestamp};
use sonde_ebpf::slot::log2_bounds;
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{
    comm_str, FileIoPrograms, FioKey, FioValue, Options, FIO_LAT_MIN_SHIFT, LAT_SLOTS, MAP_FILES, OBJECT, STATS,
};
use super::config::FileIoSourceConfig;
use super::paths::Paths;

/// Counter of bytes moved, by `sonde.file.io.operation` (`read`, `write`).
pub const BYTES: &str = "sonde.file.io";
/// Counter of calls, by operation (`read`, `write`, `fsync`).
pub const OPERATIONS: &str = "sonde.file.io.operations";
/// Counter of calls that failed, by operation.
pub const ERRORS: &str = "sonde.file.io.errors";
/// Histogram of call durations, seconds, by operation.
pub const DURATION: &str = "sonde.file.io.duration";
/// Attribute: the operation.
pub const OPERATION: &str = "sonde.file.io.operation";
/// Attribute: the file's path (`[other]`: the process' other files).
pub const PATH: &str = "file.path";
/// The path of a process' files outside the top.
pub const OTHER: &str = "[other]";

const OPERATION_NAMES: [&str; 3] = ["read", "write", "fsync"];

/// A process as the metrics name it.
type ProcessKey = (u32, u64, [u8; 16]);

/// The loaded programs plus what turns their maps into events.
#[derive(Debug)]
pub struct Collector {
    programs: FileIoPrograms,
    paths: Paths,
    top_files: usize,
    node: SharedStr,
    bounds: Arc<[f64]>,
    /// Totals of pairs taken out of the kernel map, per process.
    others: HashMap<ProcessKey, FioValue>,
    /// Last round's totals, to find the pairs that did not move.
    previous: HashMap<FioKey, FioValue>,
    telemetry: LossCounters,
}

impl Collector {
    /// Loads the programs and starts the path thread.
    pub fn load(config: &FileIoSourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let mut programs = FileIoPrograms::load(Options {
            max_files: config.max_files,
            exclude_pid: if config.include_self { 0 } else { std::process::id() },
            pids: &config.pids,
        })?;
        let ring = programs.take_new_files().ok_or(LoadError::NoSuchMap {
            object: OBJECT,
            map: super::bpf::MAP_NEW,
        })?;
        let paths = Paths::start(ring, "/proc".into()).map_err(|error| LoadError::Attach {
            object: OBJECT,
            program: "call_exit_tp",
            attach_point: "the path-reading thread".to_string(),
            source: Box::new(sonde_ebpf::aya::programs::ProgramError::IOError(error)),
        })?;
        Ok(Collector {
            programs,
            paths,
            top_files: config.top_files,
            node,
            // Durations are counted in ns, reported in seconds.
            bounds: log2_bounds(FIO_LAT_MIN_SHIFT, LAT_SLOTS, 1e-9).into(),
            others: HashMap::new(),
            previous: HashMap::new(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_FILES),
        })
    }

    /// This round's events.
    pub fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read file_io loss counters");
            }
        }
        let now = Timestamp::now();
        let mut files = self
            .programs
            .files()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        // Every pair read above has had its notice queued: name them all.
        self.paths.sync();
        // The largest first; ties by key, so the top is stable.
        files.sort_by(|(ka, va), (kb, vb)| vb.bytes().cmp(&va.bytes()).then(ka.cmp(kb)));
        let mut events = Vec::new();
        let mut live = HashSet::new();
        let mut exited = HashSet::new();
        let mut previous = HashMap::with_capacity(files.len());
        // Whether each process is gone, looked up once per process, not per file.
        let mut gone_pids: HashMap<u32, bool> = HashMap::new();
        for (rank, (key, value)) in files.iter().enumerate() {
            let process = (key.pid, key.cgroup_id, value.comm);
            let gone = *gone_pids
                .entry(key.pid)
                .or_insert_with(|| !Path::new(&format!("/proc/{}", key.pid)).exists());
            if gone {
                exited.insert(process);
            }
            if rank < self.top_files {
                let path = self.paths.get(key).unwrap_or_else(|| "[unknown]".to_string());
                live.insert(*key);
                events.extend(self.metrics(&process, &path, value, now));
                if gone {
                    self.programs.remove(key);
                } else {
                    previous.insert(*key, *value);
                }
            } else if gone || self.previous.get(key) == Some(value) {
                // Idle (or its process gone): its totals move to the
                // process' [other] and its entry leaves the kernel map,
                // which stays bounded by the files in use.
                self.others.entry(process).or_default().add(value);
                self.programs.remove(key);
            } else {
                live.insert(*key);
                previous.insert(*key, *value);
            }
        }
        // Each process' files outside the top, kernel and taken out.
        let mut rest: HashMap<ProcessKey, FioValue> = self.others.clone();
        for (key, value) in files.iter().skip(self.top_files) {
            if previous.contains_key(key) {
                rest.entry((key.pid, key.cgroup_id, value.comm)).or_default().add(value);
            }
        }
        for (process, value) in &rest {
            events.extend(self.metrics(process, OTHER, value, now));
        }
        for process in &exited {
            self.others.remove(process);
        }
        self.previous = previous;
        self.paths.retain(&live);
        Ok(events)
    }

    /// The metrics of one process' use of one file (or of its others).
    fn metrics(&self, process: &ProcessKey, path: &str, value: &FioValue, now: Timestamp) -> Vec<Event> {
        let (pid, cgroup_id, comm) = process;
        let mut attributes = Attributes::new().with(keys::PID, *pid);
        let comm = comm_str(comm);
        if !comm.is_empty() {
            attributes.insert(keys::COMM, comm);
        }
        if *cgroup_id != 0 {
            attributes.insert(keys::CGROUP_ID, *cgroup_id);
        }
        attributes.insert(PATH, path.to_string());
        attributes.insert(keys::node(), self.node.clone());
        let mut out = Vec::new();
        for (op, stats) in OPERATION_NAMES.iter().zip(value.op.iter()) {
            if stats.calls == 0 {
                continue;
            }
            let attributes = attributes.clone().with(OPERATION, *op);
            let point = |metric: Metric| Event::from(metric.with_attributes(attributes.clone()).with_timestamp(now));
            if *op != "fsync" {
                out.push(point(
                    Metric::counter(BYTES, stats.bytes as f64)
                        .with_description("Bytes read from or written to a regular file by a process.")
                        .with_unit("By"),
                ));
            }
            out.push(point(
                Metric::counter(OPERATIONS, stats.calls as f64)
                    .with_description("Read, write and sync calls on a regular file by a process.")
                    .with_unit("{call}"),
            ));
            if stats.errors > 0 {
                out.push(point(
                    Metric::counter(ERRORS, stats.errors as f64)
                        .with_description("Calls on a regular file that failed.")
                        .with_unit("{call}"),
                ));
            }
            out.push(point(
                Metric::histogram(
                    DURATION,
                    Histogram {
                        bounds: Arc::clone(&self.bounds),
                        counts: stats.slots.to_vec(),
                        sum: stats.ns as f64 / 1e9,
                        count: stats.calls,
                    },
                    Temporality::Cumulative,
                )
                .with_description("Time inside read, write and sync calls on a regular file.")
                .with_unit("s"),
            ));
        }
        out
    }

    /// The loaded programs (for their statistics, and tests).
    pub fn programs(&self) -> &FileIoPrograms {
        &self.programs
    }

    /// Files named by their last component only (their fd closed before
    /// the path could be read).
    pub fn unresolved_paths(&self) -> u64 {
        self.paths.unresolved()
    }
}

impl sonde_core::polling::Collect for Collector {
    type Error = ReadError;

    fn collect(&mut self) -> Result<Vec<Event>, ReadError> {
        Collector::collect(self)
    }
}
