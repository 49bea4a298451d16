//! The `tcp` programs (`tcp.bpf.c`): TCP connection metrics per
//! process, role, service port and peer, kept in a kernel hash map
//! ([`TcpKey`] → [`TcpCounts`]), plus drops of TCP packets by reason.
//!
//! Tracepoints `sock:inet_sock_set_state` (4.16+), `tcp:tcp_retransmit_skb`,
//! `tcp:tcp_retransmit_synack`, `tcp:tcp_send_reset`, `tcp:tcp_receive_reset`
//! (4.15+, 4.16+ for SYN-ACKs) and, optionally, `skb:kfree_skb` with drop
//! reasons (5.17+). Minimum kernel 5.5 (BTF in sysfs,
//! `bpf_probe_read_kernel`). Two events changed their event class across
//! kernels (`tcp_retransmit_skb` in 6.16, `tcp_send_reset` in 6.10): the
//! object has one program per class and [`TcpPrograms::load`] picks the one
//! the running kernel's BTF describes.

mod abi;
mod drop_reason;
mod options;

pub use abi::*;
pub use drop_reason::{drop_reason_names, parse_print_symbolic, reason_name};
pub use options::Options;

use std::io::Read;

use sonde_ebpf::aya::maps::{HashMap, MapData, PerCpuArray};
use sonde_ebpf::aya::programs::{Iter, ProgramError};
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcp.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "tcp";
/// Running totals by key.
pub const MAP_SERIES: &str = "tcp_series";
/// Live sockets: their owners, series keys and last states.
pub const MAP_SOCKS: &str = "tcp_socks";
/// Listening ports and their owners (LRU).
pub const MAP_LISTENERS: &str = "tcp_listeners";
/// Per-CPU counters of what the programs lost (`TCP_STAT_*`).
pub const MAP_STATS: &str = "tcp_stats";
/// Per-CPU drop counts by reason.
pub const MAP_DROPS: &str = "tcp_drops";

/// Socket inode → owner, for the seed only.
pub const MAP_SEED_OWNERS: &str = "tcp_seed_owners";
/// The iterator that counts the sockets older than the programs, once.
pub const PROGRAM_STATES_SEED: &str = "tcp_states_seed";
/// The iterator that lists TIME_WAIT and half-open sockets.
pub const PROGRAM_STATES_WAITING: &str = "tcp_states_waiting";

/// The extra stats slot [`TcpPrograms::stats`] appends: sockets in the
/// live-socket map now.
pub const TCP_LIVE_SOCKS: u32 = TCP_STAT_COUNT;

/// How the programs' stats slots (`TCP_STAT_*`) are exported.
pub const STATS: &[KernelStat] = &[
    KernelStat::map_full(TCP_STAT_SERIES_FULL, MAP_SERIES),
    // Handshakes that ended without their start (attached mid-handshake, or evicted).
    KernelStat::lost(TCP_STAT_NO_CONNECT_START, "no_connect_start"),
    // Events on sockets whose owner is unknown (opened before load, or
    // evicted): counted with pid 0.
    KernelStat::lost(TCP_STAT_UNTRACKED, "unattributed"),
    KernelStat::failed_read(TCP_STAT_READ_FAILED, "kernel:sock"),
    // Every insert is still there, was deleted at close, or was evicted.
    KernelStat::map_full(TCP_STAT_STATE_SOCKS_FULL, MAP_SOCKS),
    // State changes of sockets older than the programs that the seed
    // missed (kernels before 5.9 have no iter/tcp): counted from then on.
    KernelStat::lost(TCP_STAT_STATE_UNSEEDED, "state_unseeded"),
    KernelStat::evictions(
        TCP_STAT_SOCK_INSERTS,
        &[TCP_STAT_SOCK_DELETES, TCP_LIVE_SOCKS],
        MAP_SOCKS,
    ),
];

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct TcpPrograms {
    object: Object,
    series: HashMap<MapData, TcpKey, TcpCounts>,
    socks: HashMap<MapData, u64, [u8; SOCK_STATE_SIZE]>,
    stats: StatsArray,
    drops: Option<PerCpuArray<MapData, u64>>,
    sockless_resets: bool,
    /// Whether the iter/tcp programs loaded (5.9+).
    iterators: bool,
}

/// Size of `struct sock_state` (a state key, a series key, a u64 and a
/// flag padded to 8), which user space only counts.
const SOCK_STATE_SIZE: usize = std::mem::size_of::<TcpStateKey>() + std::mem::size_of::<TcpKey>() + 16;

impl std::fmt::Debug for TcpPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpPrograms")
            .field("object", &self.object)
            .field("drops", &self.drops.is_some())
            .finish_non_exhaustive()
    }
}

/// Which of two programs for one tracepoint fits the running kernel: the
/// first when its context struct exists in the kernel's BTF.
fn program_for(btf: &sonde_ebpf::aya::Btf, context: &str, new: &'static str, old: &'static str) -> &'static str {
    let has = btf
        .id_by_type_name_kind(context, sonde_ebpf::aya_obj::btf::BtfKind::Struct)
        .is_ok();
    if has {
        new
    } else {
        old
    }
}

impl TcpPrograms {
    /// Loads the programs and attaches them. Drop reasons are optional: on
    /// a kernel without them (before 5.17) the rest still loads, and
    /// [`TcpPrograms::drop_reasons`] says so.
    pub fn load(options: Options) -> Result<Self, LoadError> {
        let track_peer = u8::from(options.peer_addresses);
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // A load-time constant: the verifier prunes the address copies.
            loader.override_global("track_peer", &track_peer, true);
            loader.map_max_entries(MAP_SERIES, options.max_series.max(1));
            loader.map_max_entries(MAP_SOCKS, options.max_sockets.max(1));
            loader.map_max_entries(MAP_SEED_OWNERS, options.max_sockets.max(1));
        })?;
        let btf = sonde_ebpf::loader::kernel_btf()?;
        let (retransmit, send_reset) = {
            (
                program_for(
                    &btf,
                    "trace_event_raw_tcp_retransmit_skb",
                    "tcp_retransmit_skb",
                    "tcp_retransmit_skb_old",
                ),
                program_for(
                    &btf,
                    "trace_event_raw_tcp_send_reset",
                    "tcp_send_reset",
                    "tcp_send_reset_old",
                ),
            )
        };
        // Lifecycle first, so that the owners of new sockets are known by
        // the time their retransmits and resets are seen.
        object.attach_tracepoint("inet_sock_set_state", "sock", "inet_sock_set_state")?;
        object.attach_tracepoint(retransmit, "tcp", "tcp_retransmit_skb")?;
        object.attach_tracepoint("tcp_retransmit_synack", "tcp", "tcp_retransmit_synack")?;
        object.attach_tracepoint(send_reset, "tcp", "tcp_send_reset")?;
        object.attach_tracepoint("tcp_receive_reset", "tcp", "tcp_receive_reset")?;
        let drops = if options.drop_reasons {
            match object.attach_tracepoint("kfree_skb", "skb", "kfree_skb") {
                Ok(()) => Some(object.take_map(MAP_DROPS)?),
                Err(error) => {
                    tracing::warn!(%error, "TCP drop reasons unavailable (kernel 5.17+ needed)");
                    None
                }
            }
        } else {
            None
        };
        // Before 6.10 (the old event class) the kernel traces only resets
        // it sends on a socket, not those answering a SYN to a closed port.
        let sockless_resets = send_reset == "tcp_send_reset";
        // After attaching, so that listens seen by the program win.
        let mut listeners = object.take_map(MAP_LISTENERS)?;
        let seeded = sonde_ebpf::owners::seed_listeners(&mut listeners);
        tracing::debug!(seeded, "owners of existing TCP listeners");
        // iter/tcp is 5.9+: without it, states are followed from the first
        // change of each older socket on.
        let iterators = [PROGRAM_STATES_SEED, PROGRAM_STATES_WAITING].iter().all(|name| {
            let loaded = object.program_as::<Iter>(name).and_then(|p| {
                p.load("tcp", &btf)
                    .map_err(|e| sonde_ebpf::loader::load_error(OBJECT, name, e))
            });
            loaded
                .inspect_err(|error| tracing::warn!(%error, "TCP sockets older than sonde are not counted by state"))
                .is_ok()
        });
        let mut programs = TcpPrograms {
            series: object.take_map(MAP_SERIES)?,
            socks: object.take_map(MAP_SOCKS)?,
            stats: StatsArray::take(&mut object, MAP_STATS, TCP_STAT_COUNT)?,
            drops,
            sockless_resets,
            iterators,
            object,
        };
        if iterators {
            // After the tracepoint is attached, so that no change is missed
            // between the seed and the first transition.
            let seeded = programs.seed_states()?;
            tracing::debug!(seeded, "TCP sockets seeded by state");
        }
        Ok(programs)
    }

    /// Counts every socket older than the programs in its current state:
    /// fills the inode → owner map from `/proc`, runs the seed iterator
    /// (which inserts in the kernel, so a concurrent transition is never
    /// counted twice), and empties the map. Returns the owners offered.
    fn seed_states(&mut self) -> Result<usize, LoadError> {
        let mut owners: HashMap<MapData, u64, sonde_ebpf::owners::SockOwner> = self.object.take_map(MAP_SEED_OWNERS)?;
        let found = sonde_ebpf::owners::socket_owners();
        let offered = found
            .iter()
            .filter(|(inode, owner)| owners.insert(**inode, *owner, 0).is_ok())
            .count();
        let result = self
            .run_iterator(PROGRAM_STATES_SEED)
            .map(drop)
            .map_err(|e| sonde_ebpf::loader::load_error(OBJECT, PROGRAM_STATES_SEED, e));
        for inode in found.keys() {
            let _ = owners.remove(inode);
        }
        result.map(|()| offered)
    }

    /// Runs one iter/tcp program to its end; its output.
    fn run_iterator(&mut self, name: &'static str) -> Result<Vec<u8>, ProgramError> {
        let program: &mut Iter = self.object.program_as(name).map_err(|_| ProgramError::NotLoaded)?;
        let link = program.attach()?;
        let link = program.take_link(link)?;
        let mut file = link
            .into_file()
            .map_err(|e| ProgramError::IOError(std::io::Error::other(e)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(ProgramError::IOError)?;
        Ok(bytes)
    }

    /// Sockets by owner, role, port and state (full sockets, whose entries
    /// the programs keep in their last state), sorted by key; and the
    /// entries read (the live-socket count).
    pub fn states(&self) -> Result<(Vec<(TcpStateKey, i64)>, u64), ReadError> {
        let mut counts: std::collections::BTreeMap<TcpStateKey, i64> = Default::default();
        let mut live = 0;
        for entry in self.socks.iter() {
            let (_, value) = match entry {
                Ok(entry) => entry,
                // Deleted between reading its key and its value: closed.
                Err(sonde_ebpf::aya::maps::MapError::KeyNotFound) => continue,
                Err(e) => return Err(ReadError::of(OBJECT, MAP_SOCKS)(e)),
            };
            live += 1;
            *counts.entry(TcpStateKey::from_sock_state(&value)).or_default() += 1;
        }
        Ok((counts.into_iter().collect(), live))
    }

    /// TIME_WAIT and half-open sockets now, from the iterator (empty before
    /// kernel 5.9).
    pub fn waiting(&mut self) -> Result<Vec<TcpWaiting>, ReadError> {
        if !self.iterators {
            return Ok(Vec::new());
        }
        let bytes = self.run_iterator(PROGRAM_STATES_WAITING).map_err(|e| {
            let error = std::io::Error::other(sonde_ebpf::error::chain(&e));
            ReadError::of(OBJECT, PROGRAM_STATES_WAITING)(error.into())
        })?;
        Ok(bytes
            .chunks_exact(TcpWaiting::SIZE)
            .filter_map(TcpWaiting::from_bytes)
            .collect())
    }

    /// Whether sockets older than the programs were seeded (iter/tcp, 5.9+).
    pub fn seeded(&self) -> bool {
        self.iterators
    }

    /// Every key and its running totals, sorted by key.
    pub fn read(&self) -> Result<Vec<(TcpKey, TcpCounts)>, ReadError> {
        let mut out = Vec::new();
        for entry in self.series.iter() {
            out.push(entry.map_err(ReadError::of(OBJECT, MAP_SERIES))?);
        }
        out.sort_by_key(|(key, _)| *key);
        Ok(out)
    }

    /// Removes a key (a process that is gone). Its totals restart if it
    /// comes back.
    pub fn remove(&mut self, key: &TcpKey) -> Result<(), ReadError> {
        match self.series.remove(key) {
            Ok(()) | Err(sonde_ebpf::aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(ReadError::of(OBJECT, MAP_SERIES)(e)),
        }
    }

    /// Whether resets sent without a socket (answers to a SYN for a closed
    /// port) are seen: kernel 6.10+; before, only resets of existing
    /// sockets are traced.
    pub fn sockless_resets(&self) -> bool {
        self.sockless_resets
    }

    /// Whether drop reasons are counted.
    pub fn drop_reasons(&self) -> bool {
        self.drops.is_some()
    }

    /// Dropped TCP packets by reason number (non-zero ones), running totals.
    pub fn drops(&self) -> Result<Vec<(u32, u64)>, ReadError> {
        let Some(drops) = &self.drops else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for reason in 0..TCP_DROP_REASONS {
            let total: u64 = drops
                .get(&reason, 0)
                .map_err(ReadError::of(OBJECT, MAP_DROPS))?
                .iter()
                .sum();
            if total > 0 {
                out.push((reason, total));
            }
        }
        Ok(out)
    }

    /// What the programs lost so far (slots `TCP_STAT_*`, and
    /// [`TCP_LIVE_SOCKS`]).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        let mut totals = self.stats.read()?;
        totals.push(self.socks.keys().filter(Result::is_ok).count() as u64);
        Ok(totals)
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Loads and attaches the programs, then detaches them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    TcpPrograms::load(Options::default()).map(drop)
}
