//! The `connections` programs (`connections.bpf.c`): connects, accepts and
//! listeners checked against the policy in the kernel, reported through a
//! ring buffer.
//!
//! Minimum kernel 5.8 (ring buffer; BTF for CO-RE).

mod abi;

pub use abi::*;

use std::net::IpAddr;

use sonde_ebpf::aya::maps::lpm_trie::{Key, LpmTrie};
use sonde_ebpf::aya::maps::{HashMap, MapData, RingBuf};
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded.
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/connections.bpf.o"));

/// The object's name, used in errors.
pub const OBJECT: &str = "connections";
/// The reported events.
pub const MAP_EVENTS: &str = "cn_events";
/// Connects between their entry and exit.
pub const MAP_PENDING: &str = "cn_pending_calls";
/// Per-CPU counters (`CN_STAT_*`).
pub const MAP_STATS: &str = "cn_stats";

/// What is lost (the rest of `CN_STAT_*` are events left out on purpose,
/// reported by the source as its own counters).
pub const STATS: &[KernelStat] = &[
    KernelStat::lost(CN_STAT_RING_FULL, "ringbuf_full"),
    KernelStat::map_full(CN_STAT_PENDING_FULL, MAP_PENDING),
    KernelStat::failed_read(CN_STAT_READ_FAILED, "kernel:sock"),
];

/// The events not reported: (stat slot, reason). All on purpose (the
/// policy, the dedup window, the rate limit) but `ringbuf_full`, for want
/// of room in the ring buffer.
pub const DROPPED: [(u32, &str); 9] = [
    (CN_STAT_FILTERED_CGROUP, "cgroup"),
    (CN_STAT_FILTERED_BINARY, "binary"),
    (CN_STAT_FILTERED_PROTOCOL, "protocol"),
    (CN_STAT_FILTERED_CIDR, "cidr"),
    (CN_STAT_FILTERED_PORT, "port"),
    (CN_STAT_FILTERED_FAILED, "failed"),
    (CN_STAT_DEDUPLICATED, "deduplicated"),
    (CN_STAT_THROTTLED, "throttled"),
    (CN_STAT_RING_FULL, "ringbuf_full"),
];

/// An IPv4 or IPv6 network: address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network's address.
    pub addr: IpAddr,
    /// Its prefix length (at most 32 for IPv4, 128 for IPv6).
    pub prefix: u8,
}

impl Cidr {
    /// The LPM trie key: IPv4 as IPv4-mapped IPv6, its prefix shifted by 96
    /// (the kernel program looks every address up that way).
    pub fn key(&self) -> Key<[u8; 16]> {
        match self.addr {
            IpAddr::V4(v4) => Key::new(96 + u32::from(self.prefix), v4.to_ipv6_mapped().octets()),
            IpAddr::V6(v6) => Key::new(u32::from(self.prefix), v6.octets()),
        }
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// `10.0.0.0/8`, `fd00::/8`, or an address alone (`/32`, `/128`).
    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| format!("`{text}`: not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// The policy, in the kernel's terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Report connects, accepts, listeners (the programs of the others
    /// are not attached).
    pub connect: bool,
    /// See `connect`.
    pub accept: bool,
    /// See `connect`.
    pub listen: bool,
    /// Report TCP.
    pub tcp: bool,
    /// Report UDP (connect() of UDP sockets).
    pub udp: bool,
    /// Report connects that failed.
    pub failed: bool,
    /// Peers reported; empty: all.
    pub allow: Vec<Cidr>,
    /// Peers never reported.
    pub deny: Vec<Cidr>,
    /// Service ports reported (remote for a connect, local for an accept
    /// or a listener); empty: all.
    pub ports: Vec<u16>,
    /// Process names (comm); empty: every process.
    pub binaries: Vec<String>,
    /// Cgroup ids (v2); empty: every cgroup.
    pub cgroups: Vec<u64>,
    /// A process left out (the agent), or 0.
    pub exclude_pid: u32,
    /// Repeats (same process, kind and other end) within this many ns are
    /// counted, not reported; 0: off.
    pub dedup_ns: u64,
    /// Events a second per cgroup; 0: no limit.
    pub rate_per_sec: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            connect: true,
            accept: true,
            listen: true,
            tcp: true,
            udp: false,
            failed: true,
            allow: Vec::new(),
            deny: Vec::new(),
            ports: Vec::new(),
            binaries: Vec::new(),
            cgroups: Vec::new(),
            exclude_pid: 0,
            dedup_ns: 0,
            rate_per_sec: 0,
        }
    }
}

/// The loaded programs. Dropping it detaches everything.
pub struct ConnectionsPrograms {
    object: Object,
    events: Option<RingBuf<MapData>>,
    stats: StatsArray,
}

impl std::fmt::Debug for ConnectionsPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionsPrograms")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

fn map_error(map: &'static str) -> impl Fn(sonde_ebpf::aya::maps::MapError) -> LoadError {
    move |e| LoadError::Map {
        object: OBJECT,
        map,
        source: Box::new(e),
    }
}

fn map_mut<'a>(object: &'a mut Object, map: &'static str) -> Result<&'a mut sonde_ebpf::aya::maps::Map, LoadError> {
    object
        .ebpf_mut()
        .map_mut(map)
        .ok_or(LoadError::NoSuchMap { object: OBJECT, map })
}

impl ConnectionsPrograms {
    /// Loads the programs with `policy` and attaches those it asks for.
    pub fn load(policy: &Policy) -> Result<Self, LoadError> {
        let flags = [
            ("use_cgroups", u8::from(!policy.cgroups.is_empty())),
            ("use_binaries", u8::from(!policy.binaries.is_empty())),
            ("use_allow", u8::from(!policy.allow.is_empty())),
            ("use_deny", u8::from(!policy.deny.is_empty())),
            ("use_ports", u8::from(!policy.ports.is_empty())),
            ("report_tcp", u8::from(policy.tcp)),
            ("report_udp", u8::from(policy.udp)),
            ("report_failed", u8::from(policy.failed)),
        ];
        let mut object = Object::load(OBJECT, ELF, |loader| {
            // Load-time constants: the verifier prunes what is off.
            for (name, value) in &flags {
                loader.override_global(name, value, true);
            }
            loader.override_global("self_pid", &policy.exclude_pid, true);
            loader.override_global("dedup_ns", &policy.dedup_ns, true);
            loader.override_global("rate_per_sec", &policy.rate_per_sec, true);
        })?;
        for (map, cidrs) in [("cn_allow", &policy.allow), ("cn_deny", &policy.deny)] {
            let mut trie: LpmTrie<&mut MapData, [u8; 16], u8> =
                LpmTrie::try_from(map_mut(&mut object, map)?).map_err(map_error(map))?;
            for cidr in cidrs {
                trie.insert(&cidr.key(), 1, 0).map_err(map_error(map))?;
            }
        }
        {
            let mut map: HashMap<&mut MapData, u16, u8> =
                HashMap::try_from(map_mut(&mut object, "cn_ports")?).map_err(map_error("cn_ports"))?;
            for port in &policy.ports {
                map.insert(*port, 1, 0).map_err(map_error("cn_ports"))?;
            }
        }
        {
            let mut map: HashMap<&mut MapData, [u8; 16], u8> =
                HashMap::try_from(map_mut(&mut object, "cn_binaries")?).map_err(map_error("cn_binaries"))?;
            for binary in &policy.binaries {
                let mut comm = [0u8; 16];
                let bytes = binary.as_bytes();
                let len = bytes.len().min(15);
                comm[..len].copy_from_slice(&bytes[..len]);
                map.insert(comm, 1, 0).map_err(map_error("cn_binaries"))?;
            }
        }
        {
            let mut map: HashMap<&mut MapData, u64, u8> =
                HashMap::try_from(map_mut(&mut object, "cn_cgroups")?).map_err(map_error("cn_cgroups"))?;
            for cgroup in &policy.cgroups {
                map.insert(*cgroup, 1, 0).map_err(map_error("cn_cgroups"))?;
            }
        }
        if policy.connect {
            // The exit first: an entry whose exit is not attached yet would
            // wait for the thread's next connect.
            object.attach_tracepoint("exit_connect", "syscalls", "sys_exit_connect")?;
            object.attach_tracepoint("enter_connect", "syscalls", "sys_enter_connect")?;
        }
        if policy.accept {
            object.attach_tracepoint("exit_accept4", "syscalls", "sys_exit_accept4")?;
            object.attach_tracepoint("exit_accept", "syscalls", "sys_exit_accept")?;
        }
        if policy.listen {
            object.attach_tracepoint("set_state", "sock", "inet_sock_set_state")?;
        }
        Ok(ConnectionsPrograms {
            events: Some(object.take_map(MAP_EVENTS)?),
            stats: StatsArray::take(&mut object, MAP_STATS, CN_STAT_COUNT)?,
            object,
        })
    }

    /// The ring buffer of reported events (once: `None` after).
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }

    /// Every `CN_STAT_*` counter so far.
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        self.stats.read()
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Loads and attaches the programs with an empty policy, then detaches
/// them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    ConnectionsPrograms::load(&Policy {
        udp: true,
        ..Policy::default()
    })
    .map(drop)
}
