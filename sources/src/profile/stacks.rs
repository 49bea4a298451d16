//! Turning kernel stacks into symbolized frames, shared by the sources
//! that emit `Profile`s (`profile`, `offcpu`): the table of processes seen
//! (read from `/proc` while they live, kept a while after they exit), the
//! target filters, and the frames of a (user, kernel) stack pair with the
//! markers for what could not be stored or named.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use metrics::{Counter, Label};
use sonde_core::event::{keys, Attributes, Frame, SharedStr};

use super::bpf::{StackRef, UNWOUND_BIT};
use super::filter::Targets;
use super::frames::{marker, named_marker, plausible_return, push_unknown, unknown_marker};
use super::procs::{read_exe, read_maps, read_process, stat_start_time, Process, ProcessTable};
use super::symbolize::{Symbols, Unresolved};

/// Counter of frames that could not be named, by `reason`
/// (`process_exited`, `no_mapping`, `no_symbol`).
pub const UNKNOWN_FRAMES: &str = "sonde_profile_unknown_frames_total";
/// The comm of the idle task's profile.
pub const IDLE_COMM: &str = "swapper";

/// Instruction pointers of each stack id, innermost first.
pub type StackTable = HashMap<u32, Vec<u64>>;

/// The processes seen and how to name their stacks.
pub struct StackNamer {
    processes: ProcessTable,
    targets: Targets,
    procfs: PathBuf,
    unknown_frames: HashMap<Unresolved, Counter>,
    interval: u64,
}

impl std::fmt::Debug for StackNamer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackNamer")
            .field("processes", &self.processes.len())
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl StackNamer {
    /// For the processes `targets` selects; `labels` identify the
    /// component in [`UNKNOWN_FRAMES`].
    pub fn new(targets: Targets, labels: &[Label]) -> Self {
        let unknown_frames = [Unresolved::ProcessExited, Unresolved::NoMapping, Unresolved::NoSymbol]
            .into_iter()
            .map(|reason| {
                let mut labels = labels.to_vec();
                labels.push(Label::new("reason", reason.as_str()));
                (reason, metrics::counter!(UNKNOWN_FRAMES, labels))
            })
            .collect();
        StackNamer {
            processes: ProcessTable::default(),
            targets,
            procfs: PathBuf::from("/proc"),
            unknown_frames,
            interval: 0,
        }
    }

    /// Where processes are read (`/proc`).
    pub fn procfs(&self) -> &Path {
        &self.procfs
    }

    /// Uses `procfs` instead of `/proc` (tests).
    pub fn set_procfs(&mut self, procfs: &Path) {
        self.procfs = procfs.to_path_buf();
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

    /// Brings process `pid` up to date (read if unknown, read again if its
    /// pid was reused or it ran a new program, marked dead if it is gone),
    /// and returns it when the filters select it. `comm` is what the kernel
    /// said, for a process that is gone; `user` the user addresses about to
    /// be named: one outside every known mapping (a library loaded since)
    /// has the maps read again, once.
    pub fn process(
        &mut self,
        pid: u32,
        comm: &str,
        user: impl Iterator<Item = u64>,
        symbols: &mut Symbols,
    ) -> Option<&Process> {
        self.refresh(pid, comm, symbols);
        let process = self.processes.get(pid).filter(|p| p.selected)?;
        let mut user = user;
        if process.alive && !process.mappings.is_empty() && user.any(|a| process.mapping(a).is_none()) {
            if let Some(mappings) = read_maps(&self.procfs, pid) {
                let mut process = process.clone();
                process.mappings = mappings;
                symbols.open_files(&process);
                self.processes.insert(process);
            }
        }
        self.processes.get(pid)
    }

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
    pub fn frames(
        &self,
        stacks: &StackTable,
        process: &Process,
        user: StackRef,
        kernel: StackRef,
        symbols: &mut Symbols,
    ) -> Arc<[Frame]> {
        let mut frames = Vec::new();
        match kernel {
            StackRef::Id(_) => frames.extend(addresses(stacks, kernel).map(|a| symbols.kernel_frame(a))),
            other => frames.extend(marker(other, "kernel")),
        }
        match user {
            StackRef::Id(_) => {
                let start = frames.len();
                let mut previous = None;
                // Walked in BPF with unwind tables: every frame was checked
                // there, and a recursion repeats return addresses.
                let checked = matches!(user, StackRef::Id(id) if id & UNWOUND_BIT != 0);
                for (depth, address) in addresses(stacks, user).enumerate() {
                    // The kernel walks frame pointers without judging them:
                    // in code built without them, the "frame pointer" is
                    // any value, and the walk goes on through garbage. A
                    // return address outside every executable mapping, or
                    // the same one again (a frame pointing at itself), ends
                    // the plausible part of the stack.
                    if !checked && depth > 0 && (previous == Some(address) || !plausible_return(process, address)) {
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

    /// Starts an interval (before its stacks are named): processes found
    /// gone from now on are dead since this one.
    pub fn begin_interval(&mut self) {
        self.interval += 1;
    }

    /// Ends an interval: forgets the processes dead for long enough
    /// (returned, so their kernel-side state can go too) and lets
    /// `symbols` drop what is no longer used.
    pub fn end_interval(&mut self, symbols: &mut Symbols) -> Vec<u32> {
        let evicted = self.processes.evict_dead(self.interval);
        for pid in &evicted {
            symbols.forget_process(*pid);
        }
        symbols.end_interval();
        evicted
    }

    /// Process `pid` as known now.
    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.processes.get(pid)
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// Whether no process is known.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
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

/// The addresses to symbolize for `stack`: the leaf as sampled, every
/// other frame minus one (a return address points after the call, maybe
/// into the next function or line).
pub fn addresses(stacks: &StackTable, stack: StackRef) -> impl Iterator<Item = u64> + '_ {
    let ips = match stack {
        StackRef::Id(id) => stacks.get(&id).map(Vec::as_slice).unwrap_or(&[]),
        _ => &[],
    };
    ips.iter()
        .enumerate()
        .map(|(i, ip)| if i == 0 { *ip } else { ip.saturating_sub(1) })
}

/// A profile's attributes: the process and the node.
pub fn attributes(process: &Process, node: &SharedStr) -> Attributes {
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
