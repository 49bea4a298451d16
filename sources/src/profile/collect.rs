//! One interval: drain the kernel's counts, group them by process,
//! symbolize, and turn each process' stacks into a `Profile` event.

use std::collections::HashMap;
use std::path::Path;

use metrics::Label;
use sonde_core::event::{Event, Profile, SharedStr, StackSample, Timestamp};
use sonde_ebpf::telemetry::LossCounters;

use super::bpf::{Drained, NewPids, ProfileKey, Profiler, StackRef, OBJECT, PROFILE_ANNOUNCE_UNWIND, STATS};
use sonde_ebpf::{LoadError, ReadError};

use super::config::ProfileSourceConfig;
use super::python::{merge, Pythons};
use super::run::StackSource;
use super::stacks::{addresses, attributes, StackNamer};
use super::symbolize::Symbols;
use super::unwind::completeness::Completeness;
use super::unwind::Unwinder;

pub use super::stacks::{IDLE_COMM, UNKNOWN_FRAMES};

/// What a sample measures.
pub const SAMPLE_TYPE: &str = "cpu";
/// The unit of `Profile::period`.
pub const SAMPLE_UNIT: &str = "nanoseconds";

/// The loaded program plus what turns its counts into profiles.
pub struct Collector {
    profiler: Profiler,
    new_pids: Option<NewPids>,
    namer: StackNamer,
    node: SharedStr,
    period_ns: u64,
    last_drain: Timestamp,
    telemetry: LossCounters,
    line_numbers: bool,
    unwinder: Option<Unwinder>,
    completeness: Completeness,
    debuginfod: Option<(Vec<String>, std::path::PathBuf)>,
    python: Pythons,
    python_telemetry: LossCounters,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("profiler", &self.profiler)
            .field("processes", &self.namer.len())
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Loads and attaches the program. `labels` identify the component in
    /// the internal metrics.
    pub fn load(config: &ProfileSourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        Self::load_with(config, node, labels, |_| {})
    }

    /// [`Collector::load`] with the program's options adjusted (tests: the oracle).
    pub fn load_with(
        config: &ProfileSourceConfig,
        node: SharedStr,
        labels: &[Label],
        adjust: impl FnOnce(&mut super::bpf::Options),
    ) -> Result<Self, LoadError> {
        let mut options = config.options();
        adjust(&mut options);
        let mut profiler = Profiler::load(&options)?;
        if super::symbolize::raise_open_files_limit().is_none() {
            tracing::debug!("cannot raise the open files limit");
        }
        let new_pids = profiler.take_new_pids()?;
        let unwinder = match profiler.take_unwind_maps() {
            Some(maps) => Some(
                Unwinder::start(maps, "/proc".into(), labels).map_err(|error| LoadError::Attach {
                    object: OBJECT,
                    program: super::bpf::PROGRAM_UNWIND,
                    attach_point: "the unwind table thread".to_string(),
                    source: Box::new(sonde_ebpf::aya::programs::ProgramError::IOError(error)),
                })?,
            ),
            None => None,
        };
        Ok(Collector {
            profiler,
            new_pids: Some(new_pids),
            namer: StackNamer::new(config.targets(), labels),
            node,
            period_ns: 1_000_000_000 / config.frequency_hz.max(1),
            last_drain: Timestamp::now(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, "counts"),
            line_numbers: config.line_numbers,
            unwinder,
            completeness: Completeness::new(labels),
            debuginfod: (!config.debuginfod_urls.is_empty())
                .then(|| (config.debuginfod_urls.clone(), config.debuginfod_cache.clone().into())),
            python: Pythons::new("/proc".into()),
            python_telemetry: LossCounters::new(labels, OBJECT, super::python::maps::STATS, "python_stats"),
        })
    }

    /// The ring buffer announcing new processes (once).
    pub fn take_new_pids(&mut self) -> Option<NewPids> {
        self.new_pids.take()
    }

    /// Empty symbol caches for this collector's options (created on the
    /// thread that symbolizes: they are not `Send`).
    pub fn symbols(&self) -> Symbols {
        let mut symbols = Symbols::new(self.namer.procfs(), self.line_numbers);
        if let Some((urls, cache)) = &self.debuginfod {
            symbols.set_debuginfod(super::debuginfo::Debuginfod::new(urls.clone(), cache.clone()));
        }
        symbols
    }

    /// The loaded program (statistics, event in use).
    pub fn profiler(&self) -> &Profiler {
        &self.profiler
    }

    /// The loaded program, to take its oracle ring buffer (tests).
    pub fn profiler_mut(&mut self) -> &mut Profiler {
        &mut self.profiler
    }

    /// Reads newly announced processes from `/proc` while they live, and
    /// opens the files they map, so their stacks resolve even if they exit
    /// before the interval ends. `announced` is what [`NewPids::read`]
    /// gives: a pid carrying [`PROFILE_ANNOUNCE_UNWIND`] has been sampled
    /// often enough to have its unwind tables loaded.
    pub fn note_new_pids(&mut self, announced: &[u32], symbols: &mut Symbols) {
        let (busy, new): (Vec<u32>, Vec<u32>) = announced.iter().partition(|p| *p & PROFILE_ANNOUNCE_UNWIND != 0);
        let busy: Vec<u32> = busy.into_iter().map(|p| p & !PROFILE_ANNOUNCE_UNWIND).collect();
        // A busy process whose first announcement was lost is read now.
        let unknown: Vec<u32> = busy.iter().copied().filter(|p| self.namer.get(*p).is_none()).collect();
        let new: Vec<u32> = new.into_iter().chain(unknown).collect();
        self.namer.note_new_pids(&new, symbols);
        // Announced: new, or running a new program. Python processes are
        // described to the program (which forgot them at exec).
        for pid in &new {
            if let Some(process) = self.namer.get(*pid).filter(|p| p.selected && p.alive) {
                self.python.note(process, self.profiler.python());
            }
        }
        if let Some(unwinder) = &self.unwinder {
            // Tables only for the processes reported: the others' stacks are never read.
            let selected: Vec<u32> = busy
                .into_iter()
                .filter(|pid| self.namer.get(*pid).is_some_and(|p| p.selected && p.alive))
                .collect();
            if !selected.is_empty() {
                unwinder.note(&selected);
            }
        }
    }

    /// The unwind table loader (`None` when unwinding in BPF is off).
    pub fn unwinder(&self) -> Option<&Unwinder> {
        self.unwinder.as_ref()
    }

    /// How complete the user stacks of the reported processes were.
    pub fn completeness(&self) -> &Completeness {
        &self.completeness
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
        match self.profiler.python_stats() {
            Ok(stats) => self.python_telemetry.observe(&stats),
            Err(_) => self.python_telemetry.map_read_failed(),
        }
        let drained = self
            .profiler
            .drain()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        let end = Timestamp::now();
        let start = std::mem::replace(&mut self.last_drain, end);
        self.namer.begin_interval();

        let groups = group_by_process(&drained);
        let outcomes: HashMap<StackRef, u8> = drained
            .counts
            .iter()
            .map(|(key, _)| (key.user_stack(), key.unwind_outcome))
            .collect();
        symbols.prefetch_kernel(
            groups
                .values()
                .flat_map(|g| g.stacks.keys())
                .flat_map(|(_, kernel, _)| lookup_addresses(&drained, *kernel)),
        );
        let mut events = Vec::with_capacity(groups.len());
        for (pid, group) in groups {
            let user = || {
                group
                    .stacks
                    .keys()
                    .flat_map(|(user, _, _)| lookup_addresses(&drained, *user))
            };
            if self.namer.process(pid, &group.comm, user(), symbols).is_none() {
                continue;
            }
            let Some(process) = self.namer.get(pid) else {
                continue;
            };
            if process.alive {
                self.python.check(process, self.profiler.python());
            }
            symbols.prefetch_user(process, user());
            let samples = group
                .stacks
                .iter()
                .map(|(&(user, kernel, python), &count)| {
                    let native = self.namer.frames(&drained.stacks, process, user, kernel, symbols);
                    let outcome = outcomes.get(&user).copied().unwrap_or(0);
                    // Completeness is the native walk's: Python frames replace
                    // the interpreter loop's, not the stack's end.
                    self.completeness.observe(outcome, &native, count);
                    StackSample {
                        frames: with_python(&mut self.python, pid, native, python, &drained),
                        count,
                    }
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
        let evicted = self.namer.end_interval(symbols);
        for &pid in &evicted {
            self.python.forget(pid, self.profiler.python());
            if let Err(error) = self.profiler.forget_pid(pid) {
                tracing::debug!(%error, pid, "cannot forget pid");
            }
        }
        if let Some(unwinder) = &self.unwinder {
            unwinder.forget(&evicted);
        }
        Ok(events)
    }

    /// Uses `procfs` instead of `/proc` (tests).
    pub fn set_procfs(&mut self, procfs: &Path) {
        self.namer.set_procfs(procfs);
        self.python.set_procfs(procfs.to_path_buf());
    }
}

impl StackSource for Collector {
    const THREAD: &'static str = "sonde-profile";

    fn symbols(&self) -> Symbols {
        Collector::symbols(self)
    }

    fn take_new_pids(&mut self) -> Option<NewPids> {
        Collector::take_new_pids(self)
    }

    fn note_new_pids(&mut self, pids: &[u32], symbols: &mut Symbols) {
        Collector::note_new_pids(self, pids, symbols);
    }

    fn collect(&mut self, symbols: &mut Symbols) -> Result<Vec<Event>, ReadError> {
        Collector::collect(self, symbols)
    }
}

/// The stacks and counts of one process, threads merged.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub comm: String,
    /// (user stack, kernel stack, Python stack id) → samples.
    pub stacks: HashMap<(StackRef, StackRef, u64), u64>,
}

pub(super) fn group_by_process(drained: &Drained) -> HashMap<u32, Group> {
    let mut groups: HashMap<u32, Group> = HashMap::new();
    for (key, count) in &drained.counts {
        let group = groups.entry(key.pid).or_default();
        if group.comm.is_empty() || key.pid == key.tid {
            // The main thread's comm is the process' name.
            group.comm = ProfileKey::comm(key);
        }
        *group
            .stacks
            .entry((key.user_stack(), key.kernel_stack(), key.python_stack_id))
            .or_default() += count;
    }
    groups
}

/// The addresses to symbolize for `stack` (see [`addresses`]).
pub(super) fn lookup_addresses(drained: &Drained, stack: StackRef) -> impl Iterator<Item = u64> + '_ {
    addresses(&drained.stacks, stack)
}

/// `native` with the Python frames of stack `python` in place of the eval
/// loop's frames (see [`merge`]); a marker where the Python stack was lost.
fn with_python(
    pythons: &mut Pythons,
    pid: u32,
    native: std::sync::Arc<[sonde_core::event::Frame]>,
    python: u64,
    drained: &Drained,
) -> std::sync::Arc<[sonde_core::event::Frame]> {
    use super::python::abi::PYTHON_STACK_LOST;
    if python == u64::from(PYTHON_STACK_LOST) {
        let mut frames = native.to_vec();
        frames.push(super::frames::named_marker("[lost python stack: map full]".to_string()));
        return frames.into();
    }
    match drained.python.get(&python) {
        Some(stack) if python & 1 == 1 => {
            let frames = pythons.frames(pid, stack);
            if frames.is_empty() {
                native
            } else {
                merge::merge(&native, &frames)
            }
        }
        _ => native,
    }
}
