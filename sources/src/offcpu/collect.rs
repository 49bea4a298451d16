//! One interval: drain the kernel's counts, group them by process and task
//! state, symbolize (with `profile`'s machinery), and turn each group into
//! an `off_cpu` `Profile`, its times scaled by 1/p.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::Label;
use sonde_core::event::{Event, Frame, FrameKind, Profile, SharedStr, StackSample, Timestamp};
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::{LoadError, ReadError};

use super::bpf::{comm_str, state_name, Drained, OffcpuPrograms, OBJECT, STATS};
use super::config::OffcpuSourceConfig;
use crate::profile::bpf::{NewPids, StackRef};
use crate::profile::run::StackSource;
use crate::profile::stacks::{addresses, attributes, StackNamer};
use crate::profile::Symbols;
use crate::runqueue::bpf::Flavor;

/// What a sample measures.
pub const SAMPLE_TYPE: &str = "off_cpu";
/// The unit of `Profile::period` (and of count × period).
pub const SAMPLE_UNIT: &str = "nanoseconds";
/// `Profile::period`: each count is a microsecond off CPU, so folded
/// stacks and flame graphs read in µs (as bcc's offcputime's do) and
/// pprof's `off_cpu/nanoseconds` value (count × period) in ns.
pub const PERIOD_NS: u64 = 1000;
/// Attribute: what the thread was doing off CPU (`sleeping`,
/// `uninterruptible`, `preempted`, `idle`, `stopped`, `other`).
pub const STATE: &str = "sonde.offcpu.state";

/// The loaded program plus what turns its counts into profiles.
pub struct Collector {
    programs: OffcpuPrograms,
    namer: StackNamer,
    node: SharedStr,
    scale: f64,
    last_drain: Timestamp,
    telemetry: LossCounters,
    line_numbers: bool,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("programs", &self.programs)
            .field("scale", &self.scale)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Loads and attaches the program. `labels` identify the component in
    /// the internal metrics.
    pub fn load(config: &OffcpuSourceConfig, node: SharedStr, labels: &[Label]) -> Result<Self, LoadError> {
        let options = config.options();
        let programs = OffcpuPrograms::load(&options)?;
        if crate::profile::symbolize::raise_open_files_limit().is_none() {
            tracing::debug!("cannot raise the open files limit");
        }
        Ok(Collector {
            programs,
            namer: StackNamer::new(config.targets(), labels),
            node,
            scale: f64::from(options.sample_every.max(1)),
            last_drain: Timestamp::now(),
            telemetry: LossCounters::new(labels, OBJECT, STATS, "offcpu_counts"),
            line_numbers: config.line_numbers,
        })
    }

    /// Which flavour of the program is attached.
    pub fn flavor(&self) -> Flavor {
        self.programs.flavor()
    }

    /// The loaded program (statistics, tests).
    pub fn programs(&self) -> &OffcpuPrograms {
        &self.programs
    }

    /// Empty symbol caches (created on the thread that symbolizes).
    pub fn symbols(&self) -> Symbols {
        Symbols::new(self.namer.procfs(), self.line_numbers)
    }

    /// Drains the kernel's counts of the last interval and returns one
    /// profile per selected process and task state.
    pub fn collect(&mut self, symbols: &mut Symbols) -> Result<Vec<Event>, ReadError> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read offcpu loss counters");
            }
        }
        let drained = self
            .programs
            .drain()
            .inspect_err(|_| self.telemetry.map_read_failed())?;
        let end = Timestamp::now();
        let start = std::mem::replace(&mut self.last_drain, end);
        self.namer.begin_interval();

        let groups = group(&drained);
        symbols.prefetch_kernel(
            groups
                .values()
                .flat_map(|g| g.stacks.keys())
                .flat_map(|(_, kernel)| addresses(&drained.stacks, *kernel)),
        );
        let mut events = Vec::with_capacity(groups.len());
        for ((pid, state), group) in groups {
            let user = || {
                group
                    .stacks
                    .keys()
                    .flat_map(|(user, _)| addresses(&drained.stacks, *user))
            };
            if self.namer.process(pid, &group.comm, user(), symbols).is_none() {
                continue;
            }
            let Some(process) = self.namer.get(pid) else {
                continue;
            };
            symbols.prefetch_user(process, user());
            let samples: Vec<StackSample> = group
                .stacks
                .iter()
                .filter_map(|(&(user, kernel), &ns)| {
                    let count = scaled_units(ns, self.scale);
                    (count > 0).then(|| StackSample {
                        frames: without_tracing_frames(self.namer.frames(
                            &drained.stacks,
                            process,
                            user,
                            kernel,
                            symbols,
                        )),
                        count,
                    })
                })
                .collect();
            if samples.is_empty() {
                continue;
            }
            events.push(Event::from(Profile {
                sample_type: SharedStr::from_static(SAMPLE_TYPE),
                sample_unit: SharedStr::from_static(SAMPLE_UNIT),
                period: PERIOD_NS,
                start,
                end,
                samples,
                attributes: attributes(process, &self.node).with(STATE, state_name(state)),
            }));
        }
        self.namer.end_interval(symbols);
        Ok(events)
    }
}

impl StackSource for Collector {
    const THREAD: &'static str = "sonde-offcpu";

    fn symbols(&self) -> Symbols {
        Collector::symbols(self)
    }

    fn take_new_pids(&mut self) -> Option<NewPids> {
        None
    }

    fn note_new_pids(&mut self, _pids: &[u32], _symbols: &mut Symbols) {}

    fn collect(&mut self, symbols: &mut Symbols) -> Result<Vec<Event>, ReadError> {
        Collector::collect(self, symbols)
    }
}

/// The time of one process in one state, by stack pair, ns.
#[derive(Debug, Default)]
pub(super) struct Group {
    pub comm: String,
    pub stacks: HashMap<(StackRef, StackRef), u64>,
}

pub(super) fn group(drained: &Drained) -> HashMap<(u32, u32), Group> {
    let mut groups: HashMap<(u32, u32), Group> = HashMap::new();
    for (key, value) in &drained.counts {
        let group = groups.entry((key.pid, key.state)).or_default();
        if group.comm.is_empty() {
            group.comm = comm_str(&key.comm);
        }
        let stacks = (
            StackRef::from_raw(key.user_stack_id),
            StackRef::from_raw(key.kernel_stack_id),
        );
        *group.stacks.entry(stacks).or_default() += value.total_ns;
    }
    groups
}

/// The stack without its innermost kernel frames that are the tracing
/// itself (`bpf_prog_…`, `bpf_trace_run4`, `__bpf_trace_sched_switch`): a
/// stack walked from the tracepoint starts in the program that walked it,
/// and the leaf users look for is the scheduler.
pub fn without_tracing_frames(frames: Arc<[Frame]>) -> Arc<[Frame]> {
    let tracing = |f: &Frame| {
        f.kind == FrameKind::Kernel
            && ["bpf_prog_", "bpf_trace_run", "__bpf_trace_", "bpf_dispatcher"]
                .iter()
                .any(|p| f.function.starts_with(p))
    };
    let skip = frames.iter().take_while(|f| tracing(f)).count();
    if skip == 0 || skip == frames.len() {
        return frames;
    }
    frames[skip..].into()
}

/// `ns` off CPU, sampled with probability 1/`scale`, in [`PERIOD_NS`]
/// units: the estimate of the whole time, rounded.
pub fn scaled_units(ns: u64, scale: f64) -> u64 {
    (ns as f64 * scale / PERIOD_NS as f64).round() as u64
}
