//! The `net_flows` programs (`net_flows.bpf.c`): TCP flows from
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

mod abi;
mod closed;
mod options;
mod udp;

pub use abi::*;
pub use closed::ClosedFlows;
pub use options::{Options, SnapshotError};
pub use sonde_ebpf::cgroup::{cgroup2_root, OWN_CGROUP2};

use std::io::Read;

use sonde_ebpf::aya::maps::{HashMap, MapData};
use sonde_ebpf::aya::programs::{Iter, ProgramError};
use sonde_ebpf::loader::{load_error, Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};
use udp::attach_udp;

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/net_flows.bpf.o"));

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

/// Extra stats slots [`NetFlowPrograms::stats`] appends, counted by user
/// space: open TCP flows in their map now…
pub const FLOW_LIVE_TCP: u32 = FLOW_STAT_COUNT;
/// …UDP flows in theirs…
pub const FLOW_LIVE_UDP: u32 = FLOW_STAT_COUNT + 1;
/// …and UDP flows user space expired (removed) so far.
pub const FLOW_REMOVED_UDP: u32 = FLOW_STAT_COUNT + 2;

/// How the programs' stats slots (`FLOW_STAT_*`, and the extra ones) are exported.
pub const STATS: &[KernelStat] = &[
    // Records of closed flows the ring buffer had no room for.
    KernelStat::lost(FLOW_STAT_RINGBUF_FULL, "ringbuf_full"),
    KernelStat::failed_read(FLOW_STAT_READ_FAILED, "kernel:sock"),
    // Every insert is still there, was deleted, or was evicted by the LRU:
    // open TCP flows evicted before they closed (no final record)…
    KernelStat::evictions(FLOW_STAT_TCP_INSERTS, &[FLOW_STAT_TCP_DELETES, FLOW_LIVE_TCP], MAP_TCP),
    // …and UDP flows evicted before user space expired them.
    KernelStat::evictions(FLOW_STAT_UDP_INSERTS, &[FLOW_REMOVED_UDP, FLOW_LIVE_UDP], MAP_UDP),
    // UDP packets whose headers could not be read.
    KernelStat::lost(FLOW_STAT_UDP_UNPARSED, "udp_unparsed"),
    // Passive opens whose listener's owner is unknown.
    KernelStat::lost(FLOW_STAT_NO_OWNER, "unattributed"),
];

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct NetFlowPrograms {
    object: Object,
    closed: Option<ClosedFlows>,
    tcp: HashMap<MapData, u64, [u8; TCP_FLOW_SIZE]>,
    udp: Option<HashMap<MapData, UdpFlowKey, UdpFlow>>,
    udp_removed: u64,
    stats: StatsArray,
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
        let mut object = Object::load(OBJECT, ELF, |loader| {
            loader.map_max_entries(MAP_TCP, options.max_tcp_flows.max(1));
            loader.map_max_entries(MAP_UDP, options.max_udp_flows.max(1));
            loader.override_global("learn_owner_on_egress", &learn, true);
        })?;
        let btf = sonde_ebpf::loader::kernel_btf()?;
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
        let seeded = sonde_ebpf::owners::seed_listeners(&mut listeners);
        tracing::debug!(seeded, "owners of existing TCP listeners");
        Ok(NetFlowPrograms {
            closed: Some(ClosedFlows(object.take_map(MAP_CLOSED)?)),
            tcp: object.take_map(MAP_TCP)?,
            udp,
            udp_removed: 0,
            stats: StatsArray::take(&mut object, MAP_STATS, FLOW_STAT_COUNT)?,
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
            out.push(entry.map_err(ReadError::of(OBJECT, MAP_UDP))?);
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
            Err(sonde_ebpf::aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(ReadError::of(OBJECT, MAP_UDP)(e)),
        }
    }

    /// What the programs lost so far (slots `FLOW_STAT_*`, then
    /// [`FLOW_LIVE_TCP`], [`FLOW_LIVE_UDP`] and [`FLOW_REMOVED_UDP`]).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        let mut totals = self.stats.read()?;
        totals.push(self.tcp.keys().filter(Result::is_ok).count() as u64);
        totals.push(
            self.udp
                .as_ref()
                .map_or(0, |udp| udp.keys().filter(Result::is_ok).count() as u64),
        );
        totals.push(self.udp_removed);
        Ok(totals)
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

pub use crate::clock::monotonic_ns;

/// Loads and attaches the programs, then detaches them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    NetFlowPrograms::load(Options::default()).map(drop)
}
