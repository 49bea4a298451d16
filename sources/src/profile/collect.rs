//! One interval: drain the kernel's counts, group them by process,
//! symbolize, and turn each process' stacks into a `Profile` event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metrics::{Counter, Label};
use sonde_core::event::{keys, Attributes, Event, Frame, Profile, SharedStr, StackSample, Timestamp};
use sonde_ebpf::telemetry::LossCounters;

use super::bpf::{Drained, NewPids, ProfileKey, Profiler, StackRef, OBJECT, STATS};
use sonde_ebpf::{LoadError, ReadError};

use super::config::ProfileSourceConfig;
use super::filter::Targets;
use super::frames::{marker, named_marker, plausible_return, push_unknown, unknown_marker};
use super::procs::{read_exe, read_maps, read_process, stat_start_time, Process, ProcessTable};
use super::symbolize::{Symbols, Unresolved};

/// Counter of frames that could not be named, by `reason`
/// (`process_exited`, `no_mapping`, `no_symbol`).
pub const UNKNOWN_FRAMES: &str = "sonde_profile_unknown_frames_total";
/// What a sample measures.
pub const SAMPLE_TYPE: &str = "cpu";
/// The unit of `Profile::period`.
pub const SAMPLE_UNIT: &str = "nanoseconds";
/// The comm of the idle task's profile.
pub const IDLE_COMM: &str = "swapper";

/// The loaded program plus what turns its counts into profiles.
pub struct Collector {
    profiler: Profiler,
    new_pids: Option<NewPids>,
    processes: ProcessTable,
    targets: Targets,
    node: SharedStr,
    period_ns: u64,
    interval: u64,
    last_drain: Timestamp,
    procfs: PathBuf,
    telemetry: LossCounters,
    unknown_frames: HashMap<Unresolved, Counter>,
    line_numbers: bool,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("profiler", &self.profiler)
            .field("processes", &self.processes.len())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Loads and attaches the program. `labels` identify the component in
    /// the internal metrics.
    pub fn load(config: &ProfileSourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let mut profiler = Profiler::load(&config.options())?;
        if super::symbolize::raise_open_files_limit().is_none() {
            tracing::debug!("cannot raise the open files limit");
        }
        let new_pids = profiler.take_new_pids()?;
        let unknown_frames = [Unresolved::ProcessExited, Unresolved::NoMapping, Unresolved::NoSymbol]
            .into_iter()
            .map(|reason| {
                let mut labels = labels.to_vec();
                labels.push(Label::new("reason", reason.as_str()));
                (reason, metrics::counter!(UNKNOWN_FRAMES, labels))
            })
            .collect();
        Ok(Collector {
            profiler,
            new_pids: Some(new_pids),
            processes: ProcessTable::default(),
            targets: config.targets(),
            node,
            period_ns: 1_000_000_000 / config.frequency_hz.max(1),
            interval: 0,
            last_drain: Timestamp::now(),
            procfs: PathBuf::from("/proc"),
            telemetry: LossCounters::new(labels, OBJECT, STATS, "counts"),
            unknown_frames,
            line_numbers: config.line_numbers,
        })
    }

    /// The ring buffer announcing new processes (once).
    pub fn take_new_pids(&mut self) -> Option<NewPids> {
        self.new_pids.take()
    }

    /// Empty symbol caches for this collector's options (created on the
    /// thread that symbolizes: they are not `Send`).
    pub fn symbols(&self) -> Symbols {
        Symbols::new(&self.procfs, self.line_numbers)
    }

    /// The loaded program (statistics, event in use).
    pub fn profiler(&self) -> &Profiler {
        &self.profiler
    }

    /// Reads newly announced processes from `/proc` while they live, and
    /// opens the files they map, so their stacks resolve even if they exit
    /// before the interval ends.
    pub fn note_new_pids(&mut self, pids: &[u32], symbols: &mut Symbols) {
        for &pid in pids {
            let known = self.processes.get(pid).filter(|p| p.alive);
            if known.is_some_and(|p| still_same(&self.procfs, p)) {
                continue;
            }
            if let Some(process) = self.reread(pid, symbols) {
                self.processes.insert(process);
            }
        }
    }

    /// Reads process `pid` again. A process that exited but is not reaped
    /// yet (a zombie: same start time, no executable, empty maps) keeps the
    /// mappings read while it ran, and is gone: its last samples, drained
    /// after its exit, are named from them.
    fn reread(&self, pid: u32, symbols: &mut Symbols) -> Option<Process> {
        let fresh = self.read(pid, symbols);
        match (fresh, self.processes.get(pid)) {
            (Some(fresh), Some(known))
                if fresh.selected
                    && fresh.mappings.is_empty()
                    && fresh.start_time == known.start_time
                    && !known.mappings.is_empty() =>
            {
                let mut kept = known.clone();
                kept.alive = false;
                Some(kept)
            }
            (fresh, _) => fresh,
        }
    }

    /// Reads process `pid`, with its mappings (and opens their files) when
    /// the filters select it.
    fn read(&self, pid: u32, symbols: &mut Symbols) -> Option<Process> {
        let mut process = read_process(&self.procfs, pid, false)?;
        process.selected = self.targets.matches(&process);
        if process.selected {
            process.mappings = read_maps(&self.procfs, pid)?;
            symbols.open_files(&process);
        }
        Some(process)
    }

    /// Drains the kernel's counts of the last interval and returns one
    /// profile per selected process; also exports the program's loss counters.
    pub fn collect(&mut self, symbols: &mut Symbols) -> Result<Vec<Event>, ReadError> {
        match self.profiler.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read profile loss counters");
            }
        }
        let drained = self
            .profiler
            .drain()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        let end = Timestamp::now();
        let start = std::mem::replace(&mut self.last_drain, end);
        self.interval += 1;

        let groups = group_by_process(&drained);
        symbols.prefetch_kernel(
            groups
                .values()
                .flat_map(|g| g.stacks.keys())
                .flat_map(|(_, kernel)| lookup_addresses(&drained, *kernel)),
        );
        let mut events = Vec::with_capacity(groups.len());
        for (pid, group) in groups {
            self.refresh(pid, &group.comm, symbols);
            let user = || {
                group
                    .stacks
                    .keys()
                    .flat_map(|(user, _)| lookup_addresses(&drained, *user))
            };
            let Some(process) = self.processes.get(pid).filter(|p| p.selected) else {
                continue;
            };
            // An address outside every known mapping: a library loaded
            // since the maps were read. Read them again, once.
            if process.alive && !process.mappings.is_empty() && user().any(|a| process.mapping(a).is_none()) {
                if let Some(mappings) = read_maps(&self.procfs, pid) {
                    let mut process = process.clone();
                    process.mappings = mappings;
                    symbols.open_files(&process);
                    self.processes.insert(process);
                }
            }
            let Some(process) = self.processes.get(pid) else {
                continue;
            };
            symbols.prefetch_user(process, user());
            let samples = group
                .stacks
                .iter()
                .map(|(&(user, kernel), &count)| StackSample {
                    frames: self.frames(&drained, process, user, kernel, symbols),
                    count,
                })
                .collect();
            events.push(Event::from(Profile {
                sample_type: SharedStr::from_static(SAMPLE_TYPE),
                sample_unit: SharedStr::from_static(SAMPLE_UNIT),
                period: self.period_ns,
                start,
                end,
                samples,
                attributes: attributes(process, &self.node),
            }));
        }
        for pid in self.processes.evict_dead(self.interval) {
            symbols.forget_process(pid);
            if let Err(error) = self.profiler.forget_pid(pid) {
                tracing::debug!(%error, pid, "cannot forget pid");
            }
        }
        symbols.end_interval();
        Ok(events)
    }

    /// Brings process `pid` up to date: read if unknown, read again if its
    /// pid was reused or it ran a new program, marked dead if it is gone.
    fn refresh(&mut self, pid: u32, comm: &str, symbols: &mut Symbols) {
        if pid == 0 {
            if self.processes.get(0).is_none() {
                let mut idle = Process::gone(0, IDLE_COMM);
                idle.selected = self.targets.pids.is_empty() || self.targets.pids.contains(&0);
                self.processes.insert(idle);
            }
            return;
        }
        let stale = match self.processes.get(pid) {
            None => true,
            Some(p) if !p.alive => false,
            Some(p) => !still_same(&self.procfs, p),
        };
        if stale {
            let process = self.reread(pid, symbols).unwrap_or_else(|| {
                // Gone: keep what was known (its mappings resolve its
                // stacks), or what the kernel said.
                let mut gone = self.processes.get(pid).cloned().unwrap_or_else(|| {
                    let mut gone = Process::gone(pid, comm);
                    gone.selected = self.targets.matches(&gone);
                    gone
                });
                gone.alive = false;
                gone
            });
            self.processes.insert(process);
        }
        let interval = self.interval;
        if let Some(process) = self.processes.get_mut(pid) {
            if !process.alive && process.dead_since.is_none() {
                process.dead_since = Some(interval);
            }
        }
    }

    /// The frames of one (user, kernel) stack pair, leaf first: kernel
    /// frames, then user frames.
    fn frames(
        &self,
        drained: &Drained,
        process: &Process,
        user: StackRef,
        kernel: StackRef,
        symbols: &mut Symbols,
    ) -> Arc<[Frame]> {
        let mut frames = Vec::new();
        match kernel {
            StackRef::Id(_) => frames.extend(lookup_addresses(drained, kernel).map(|a| symbols.kernel_frame(a))),
            other => frames.extend(marker(other, "kernel")),
        }
        match user {
            StackRef::Id(_) => {
                let start = frames.len();
                let mut previous = None;
                for (depth, address) in lookup_addresses(drained, user).enumerate() {
                    // The kernel walks frame pointers without judging them:
                    // in code built without them, the "frame pointer" is
                    // any value, and the walk goes on through garbage. A
                    // return address outside every executable mapping, or
                    // the same one again (a frame pointing at itself), ends
                    // the plausible part of the stack.
                    if depth > 0 && (previous == Some(address) || !plausible_return(process, address)) {
                        push_unknown(&mut frames, start, unknown_marker());
                        break;
                    }
                    previous = Some(address);
                    match symbols.user_frame(process, address) {
                        Ok(frame) => frames.push(frame),
                        Err((frame, reason)) => {
                            if let Some(counter) = self.unknown_frames.get(&reason) {
                                counter.increment(1);
                            }
                            push_unknown(&mut frames, start, frame);
                        }
                    }
                }
            }
            other => frames.extend(marker(other, "user")),
        }
        if frames.is_empty() {
            frames.push(named_marker("[no stack]".to_string()));
        }
        frames.into()
    }

    /// Uses `procfs` instead of `/proc` (tests).
    pub fn set_procfs(&mut self, procfs: &Path) {
        self.procfs = procfs.to_path_buf();
    }
}

/// Whether live process `p` is still the same program: same start time
/// (not a reused pid) and same executable (no exec since).
fn still_same(procfs: &Path, p: &Process) -> bool {
    let stat = std::fs::read_to_string(procfs.join(format!("{}/stat", p.pid)));
    let Some(start) = stat.ok().as_deref().and_then(stat_start_time) else {
        return false;
    };
    start == p.start_time && read_exe(procfs, p.pid) == p.exe
}

/// The stacks and counts of one process, threads merged.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub comm: String,
    pub stacks: HashMap<(StackRef, StackRef), u64>,
}

pub(super) fn group_by_process(drained: &Drained) -> HashMap<u32, Group> {
    let mut groups: HashMap<u32, Group> = HashMap::new();
    for (key, count) in &drained.counts {
        let group = groups.entry(key.pid).or_default();
        if group.comm.is_empty() || key.pid == key.tid {
            // The main thread's comm is the process' name.
            group.comm = ProfileKey::comm(key);
        }
        *group.stacks.entry((key.user_stack(), key.kernel_stack())).or_default() += count;
    }
    groups
}

/// The addresses to symbolize for `stack`: the leaf as sampled, every
/// other frame minus one (a return address points after the call, maybe
/// into the next function or line).
pub(super) fn lookup_addresses(drained: &Drained, stack: StackRef) -> impl Iterator<Item = u64> + '_ {
    let ips = match stack {
        StackRef::Id(id) => drained.stacks.get(&id).map(Vec::as_slice).unwrap_or(&[]),
        _ => &[],
    };
    ips.iter()
        .enumerate()
        .map(|(i, ip)| if i == 0 { *ip } else { ip.saturating_sub(1) })
}

fn attributes(process: &Process, node: &SharedStr) -> Attributes {
    let mut attributes = Attributes::new()
        .with(keys::PID, process.pid)
        .with(keys::COMM, process.comm.clone());
    if let Some(exe) = &process.exe {
        attributes.insert(keys::EXE, exe.clone());
    }
    if let Some(cgroup) = &process.cgroup {
        attributes.insert(keys::CGROUP_PATH, cgroup.clone());
    }
    attributes.insert(keys::node(), node.clone());
    attributes
}
