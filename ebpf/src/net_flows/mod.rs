//! The `net_flows` programs (`bpf/net_flows.bpf.c`): TCP flows from
//! `sock:inet_sock_set_state` with the socket's own counters (records of
//! closed flows in a ring buffer, snapshots of open ones from an `iter/tcp`
//! iterator), and UDP flows counted per packet by cgroup_skb programs on
//! the cgroup v2 root.
//!
//! Minimum kernel 5.9 (`iter/tcp`, `bpf_skc_to_tcp_sock`; ring buffers
//! 5.8; cgroup links 5.7). The iterator walks the sockets of the agent's
//! network namespace, so in Kubernetes the agent runs with `hostNetwork`
//! to see the node's; the tracepoints and cgroup programs see every
//! namespace.

mod cgroup;
mod types;

pub use cgroup::{cgroup2_root, OWN_CGROUP2};
pub use types::*;

use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, Iter, ProgramError};
use metrics::Label;

use crate::error::{LoadError, ReadError};
use crate::loader::{load_error, Object, ProgramStats};
use crate::telemetry::{self, KernelCounter};

/// The object's name, used in errors.
pub const OBJECT: &str = "net_flows";
/// Open TCP flows by socket (LRU).
pub const MAP_TCP: &str = "flow_tcp";
/// UDP flows by socket and peer (LRU).
pub const MAP_UDP: &str = "flow_udp";
/// Listening ports and their owners (LRU).
pub const MAP_LISTENERS: &str = "flow_listeners";
/// Records of closed TCP flows.
pub const MAP_CLOSED: &str = "flow_closed";
/// Per-CPU counters of what the programs lost (`FLOW_STAT_*`).
pub const MAP_STATS: &str = "flow_stats";
/// The iterator that snapshots open TCP flows.
pub const PROGRAM_SNAPSHOT: &str = "flow_snapshot";
/// The cgroup_skb program counting sent UDP datagrams.
pub const PROGRAM_UDP_EGRESS: &str = "flow_udp_egress";

/// Size of `struct tcp_flow`, which user space only counts.
const TCP_FLOW_SIZE: usize = FLOW_TCP_VALUE_SIZE as usize;

/// Why a snapshot of open flows failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The iterator could not be started.
    #[error("cannot start the iter/tcp snapshot of `{OBJECT}`: {}", crate::error::chain(.0))]
    Start(#[source] Box<ProgramError>),
    /// Reading its output failed.
    #[error("cannot read the iter/tcp snapshot of `{OBJECT}`: {0}")]
    Read(#[source] std::io::Error),
}

/// How to load the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Count UDP flows (cgroup_skb programs on the cgroup v2 root).
    pub udp: bool,
    /// Capacity of the open-TCP-flow map.
    pub max_tcp_flows: u32,
    /// Capacity of the UDP flow map.
    pub max_udp_flows: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            udp: true,
            max_tcp_flows: FLOW_MAX_TCP,
            max_udp_flows: FLOW_MAX_UDP,
        }
    }
}

/// What the programs lost, as running totals since load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Records of closed flows the ring buffer had no room for.
    pub ringbuf_full: u64,
    /// Failed reads of kernel memory.
    pub read_failed: u64,
    /// Open TCP flows evicted before they closed (no final record).
    pub tcp_evictions: u64,
    /// UDP flows evicted before user space expired them.
    pub udp_evictions: u64,
    /// UDP packets whose headers could not be read.
    pub udp_unparsed: u64,
    /// Passive opens whose listener's owner is unknown.
    pub no_owner: u64,
}

/// The records of closed TCP flows, as the kernel writes them. Pollable
/// (`AsRawFd`): readable when records wait.
pub struct ClosedFlows(RingBuf<MapData>);

impl std::fmt::Debug for ClosedFlows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClosedFlows").finish_non_exhaustive()
    }
}

impl ClosedFlows {
    /// Every record waiting now.
    pub fn drain(&mut self) -> Vec<FlowRecord> {
        let mut out = Vec::new();
        while let Some(item) = self.0.next() {
            out.extend(FlowRecord::from_bytes(&item));
        }
        out
    }
}

impl AsRawFd for ClosedFlows {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct NetFlowPrograms {
    object: Object,
    closed: Option<ClosedFlows>,
    tcp: HashMap<MapData, u64, [u8; TCP_FLOW_SIZE]>,
    udp: Option<HashMap<MapData, UdpFlowKey, UdpFlow>>,
    udp_removed: u64,
    stats: PerCpuArray<MapData, u64>,
}

impl std::fmt::Debug for NetFlowPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetFlowPrograms")
            .field("object", &self.object)
            .field("udp", &self.udp.is_some())
            .finish_non_exhaustive()
    }
}

impl NetFlowPrograms {
    /// Loads the programs and attaches them (the UDP ones to the cgroup v2
    /// root, mounting one if there is none).
    pub fn load(options: Options) -> Result<Self, LoadError> {
        match Self::load_with(options, true) {
            // Kernels before ~6.13 refuse bpf_get_current_pid_tgid/comm to
            // cgroup_skb programs: load the UDP programs without them.
            Err(LoadError::Verifier { program, .. }) if program == PROGRAM_UDP_EGRESS => {
                tracing::info!(
                    "this kernel refuses current-task helpers to cgroup_skb programs: UDP sockets \
                     opened before sonde started are reported without their process"
                );
                Self::load_with(options, false)
            }
            result => result,
        }
    }

    fn load_with(options: Options, learn_owner_on_egress: bool) -> Result<Self, LoadError> {
        let learn = u8::from(learn_owner_on_egress);
        let mut object = Object::load(OBJECT, crate::objects::NET_FLOWS, |loader| {
            loader.map_max_entries(MAP_TCP, options.max_tcp_flows.max(1));
            loader.map_max_entries(MAP_UDP, options.max_udp_flows.max(1));
            loader.override_global("learn_owner_on_egress", &learn, true);
        })?;
        let btf = crate::loader::kernel_btf()?;
        let snapshot: &mut Iter = object.program_as(PROGRAM_SNAPSHOT)?;
        snapshot
            .load("tcp", &btf)
            .map_err(|e| load_error(OBJECT, PROGRAM_SNAPSHOT, e))?;
        let udp = if options.udp {
            attach_udp(&mut object)?;
            Some(object.take_map(MAP_UDP)?)
        } else {
            None
        };
        // Last: flows start being tracked once every consumer is ready.
        object.attach_tracepoint("inet_sock_set_state", "sock", "inet_sock_set_state")?;
        // After attaching, so that listens seen by the program win.
        let mut listeners = object.take_map(MAP_LISTENERS)?;
        let seeded = crate::owners::seed_listeners(&mut listeners);
        tracing::debug!(seeded, "owners of existing TCP listeners");
        Ok(NetFlowPrograms {
            closed: Some(ClosedFlows(object.take_map(MAP_CLOSED)?)),
            tcp: object.take_map(MAP_TCP)?,
            udp,
            udp_removed: 0,
            stats: object.take_map(MAP_STATS)?,
            object,
        })
    }

    /// The ring buffer of closed TCP flows (once; `None` afterwards).
    pub fn take_closed(&mut self) -> Option<ClosedFlows> {
        self.closed.take()
    }

    /// A snapshot of every open TCP flow, from the iterator.
    pub fn snapshot(&mut self) -> Result<Vec<FlowRecord>, SnapshotError> {
        let program: &mut Iter = self
            .object
            .program_as(PROGRAM_SNAPSHOT)
            .map_err(|_| SnapshotError::Start(Box::new(ProgramError::NotLoaded)))?;
        let start = |e| SnapshotError::Start(Box::new(e));
        let link = program.attach().map_err(start)?;
        let link = program.take_link(link).map_err(start)?;
        let mut file = link
            .into_file()
            .map_err(|e| start(ProgramError::IOError(std::io::Error::other(e))))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(SnapshotError::Read)?;
        Ok(bytes
            .chunks_exact(FlowRecord::SIZE)
            .filter_map(FlowRecord::from_bytes)
            .collect())
    }

    /// Every UDP flow and its running totals (empty when UDP is off).
    pub fn udp_flows(&self) -> Result<Vec<(UdpFlowKey, UdpFlow)>, ReadError> {
        let Some(udp) = &self.udp else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in udp.iter() {
            out.push(entry.map_err(read_error(MAP_UDP))?);
        }
        Ok(out)
    }

    /// Removes an expired UDP flow. Packets counted between the read that
    /// expired it and this removal are lost (the flow was idle, so rarely).
    pub fn remove_udp(&mut self, key: &UdpFlowKey) -> Result<(), ReadError> {
        let Some(udp) = &mut self.udp else { return Ok(()) };
        match udp.remove(key) {
            Ok(()) => {
                self.udp_removed += 1;
                Ok(())
            }
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(read_error(MAP_UDP)(e)),
        }
    }

    /// What the programs lost so far.
    pub fn stats(&self) -> Result<FlowStats, ReadError> {
        let mut totals = [0u64; FLOW_STAT_COUNT as usize];
        for (index, total) in totals.iter_mut().enumerate() {
            *total = self
                .stats
                .get(&(index as u32), 0)
                .map_err(read_error(MAP_STATS))?
                .iter()
                .sum();
        }
        let at = |i: u32| totals[i as usize];
        let tcp_live = self.tcp.keys().filter(Result::is_ok).count() as u64;
        let udp_live = self
            .udp
            .as_ref()
            .map_or(0, |udp| udp.keys().filter(Result::is_ok).count() as u64);
        // Every insert is still there, was deleted, or was evicted by the LRU.
        Ok(FlowStats {
            ringbuf_full: at(FLOW_STAT_RINGBUF_FULL),
            read_failed: at(FLOW_STAT_READ_FAILED),
            tcp_evictions: at(FLOW_STAT_TCP_INSERTS)
                .saturating_sub(at(FLOW_STAT_TCP_DELETES))
                .saturating_sub(tcp_live),
            udp_evictions: at(FLOW_STAT_UDP_INSERTS)
                .saturating_sub(self.udp_removed)
                .saturating_sub(udp_live),
            udp_unparsed: at(FLOW_STAT_UDP_UNPARSED),
            no_owner: at(FLOW_STAT_NO_OWNER),
        })
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Attaches the UDP programs to the cgroup v2 root. Through bpf_link
/// (5.7+), which always allows other programs beside ours.
fn attach_udp(object: &mut Object) -> Result<(), LoadError> {
    let attach_error = |program: &'static str, what: &str, source: ProgramError| LoadError::Attach {
        object: OBJECT,
        program,
        attach_point: what.to_string(),
        source: Box::new(source),
    };
    let root = cgroup2_root().map_err(|e| attach_error("flow_sock_create", "the cgroup v2 root", e.into()))?;
    let cgroup = std::fs::File::open(&root)
        .map_err(|e| attach_error("flow_sock_create", &format!("cgroup {}", root.display()), e.into()))?;
    let program = "flow_sock_create";
    let create: &mut CgroupSock = object.program_as(program)?;
    create.load().map_err(|e| load_error(OBJECT, program, e))?;
    create
        .attach(&cgroup, CgroupAttachMode::Single)
        .map_err(|e| attach_error(program, &format!("cgroup/sock_create {}", root.display()), e))?;
    for (program, direction) in [
        (PROGRAM_UDP_EGRESS, CgroupSkbAttachType::Egress),
        ("flow_udp_ingress", CgroupSkbAttachType::Ingress),
    ] {
        let skb: &mut CgroupSkb = object.program_as(program)?;
        skb.load().map_err(|e| load_error(OBJECT, program, e))?;
        skb.attach(&cgroup, direction, CgroupAttachMode::Single)
            .map_err(|e| attach_error(program, &format!("cgroup_skb {direction:?} {}", root.display()), e))?;
    }
    Ok(())
}

fn read_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> ReadError {
    move |source| ReadError {
        object: OBJECT,
        map,
        source: Box::new(source),
    }
}

/// `CLOCK_MONOTONIC` now, ns: the clock of `bpf_ktime_get_ns()`, which
/// stamps the records.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Loads and attaches the programs, then detaches them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    NetFlowPrograms::load(Options::default()).map(drop)
}

/// The `sonde_ebpf_*` counters of one running `net_flows` source.
#[derive(Debug)]
pub struct FlowTelemetry {
    ringbuf_full: KernelCounter,
    read_failed: KernelCounter,
    tcp_evictions: KernelCounter,
    udp_evictions: KernelCounter,
    udp_unparsed: KernelCounter,
    no_owner: KernelCounter,
    seen: (u64, u64),
    map_read_failed: metrics::Counter,
}

impl FlowTelemetry {
    /// Registers the counters with the component's `labels`.
    pub fn new(labels: &[Label]) -> Self {
        let labels = telemetry::with_label(labels, "object", OBJECT);
        let counter = |name, key, value: &str| KernelCounter::new(name, telemetry::with_label(&labels, key, value));
        FlowTelemetry {
            ringbuf_full: counter(telemetry::LOST_EVENTS, "reason", "ringbuf_full"),
            read_failed: counter(telemetry::FAILED_READS, "what", "kernel:sock"),
            tcp_evictions: counter(telemetry::MAP_EVICTIONS, "map", MAP_TCP),
            udp_evictions: counter(telemetry::MAP_EVICTIONS, "map", MAP_UDP),
            udp_unparsed: counter(telemetry::LOST_EVENTS, "reason", "udp_unparsed"),
            no_owner: counter(telemetry::LOST_EVENTS, "reason", "unattributed"),
            seen: (0, 0),
            map_read_failed: metrics::counter!(
                telemetry::FAILED_READS,
                telemetry::with_label(&labels, "what", "map:flows")
            ),
        }
    }

    /// Exports the programs' running totals.
    pub fn observe(&mut self, stats: &FlowStats) {
        self.ringbuf_full.observe(stats.ringbuf_full);
        self.read_failed.observe(stats.read_failed);
        self.udp_unparsed.observe(stats.udp_unparsed);
        self.no_owner.observe(stats.no_owner);
        // Derived from racing reads: never let them step back.
        self.seen = (
            self.seen.0.max(stats.tcp_evictions),
            self.seen.1.max(stats.udp_evictions),
        );
        self.tcp_evictions.observe(self.seen.0);
        self.udp_evictions.observe(self.seen.1);
    }

    /// Counts a failed read of a map or snapshot by user space.
    pub fn map_read_failed(&self) {
        self.map_read_failed.increment(1);
    }
}
