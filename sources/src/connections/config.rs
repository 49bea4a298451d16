//! The `connections` source's options.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{did_you_mean, Checks, Invalid};
use sonde_core::event::EventKinds;
use sonde_core::privileges::{Capability, CapabilitySet};
use sonde_core::registry::{EbpfSide, SourceType};
use sonde_core::{BoxError, Source, SourceConfig, SourceContext};

use super::bpf::{Cidr, Policy, CN_MAX_BINARIES, CN_MAX_CGROUPS, CN_MAX_CIDRS, CN_MAX_PORTS};
use crate::process::{DEFAULT_ANCESTRY_DEPTH, MAX_ANCESTRY_DEPTH};

/// The `directions` names.
pub const DIRECTIONS: [&str; 3] = ["connect", "accept", "listen"];
/// The `protocols` names.
pub const PROTOCOLS: [&str; 2] = ["tcp", "udp"];

fn default_directions() -> Vec<String> {
    DIRECTIONS.iter().map(|d| d.to_string()).collect()
}
fn default_protocols() -> Vec<String> {
    vec!["tcp".to_string()]
}
const fn default_true() -> bool {
    true
}
const fn default_depth() -> usize {
    DEFAULT_ANCESTRY_DEPTH
}
const fn default_cache_size() -> usize {
    16384
}
const fn default_interval() -> Duration {
    Duration::from_secs(10)
}

/// Which events are reported; every filter is applied in the kernel, and
/// the events left out are counted by reason
/// (`sonde_connections_dropped_total{reason}`), never sent to user space.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Peers reported, as CIDRs (`10.0.0.0/8`, `fd00::/8`, or an address
    /// alone): a connect's destination, an accept's client. IPv4 ones also
    /// match IPv4-mapped IPv6 peers (`::ffff:10.1.2.3`) of dual-stack
    /// sockets. Listeners have no peer and are not matched. At most 256.
    /// Empty: any peer.
    #[serde(default)]
    pub cidr: Vec<String>,
    /// Peers never reported, as CIDRs (applied after `cidr`). At most 256.
    #[serde(default)]
    pub exclude_cidr: Vec<String>,
    /// Service ports reported: a connect's destination port, an accept's or
    /// a listener's local port. At most 256. Empty: any port.
    #[serde(default)]
    pub port: Vec<u16>,
    /// Processes by name (`comm` of the calling thread, at most 15 bytes:
    /// `curl`). At most 64. Empty: any process.
    #[serde(default)]
    pub binary: Vec<String>,
    /// Cgroups by path under the cgroup v2 root
    /// (`/system.slice/nginx.service`); processes directly in them. At most
    /// 256. Empty: any cgroup.
    #[serde(default)]
    pub cgroup: Vec<String>,
}

/// An audit of network connections: outbound `connect()`s, inbound
/// `accept()`s and new listeners, IPv4 and IPv6, each reported as a log
/// record (`network.connect`, `network.accept`, `network.listen`) with the
/// process, its `sonde.process.exec_id` and parent chain, and both endpoints;
/// filtered in the kernel by `match` (CIDRs, ports, process, cgroup).
/// Not seen: connects and accepts made through io_uring, TCP Fast Open
/// connects made by `sendto(MSG_FASTOPEN)`, UDP peers reached by `sendto`
/// without a `connect()`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsSourceConfig {
    /// What to report: any of `connect` (outbound), `accept` (inbound),
    /// `listen` (new listening sockets). Default all three.
    #[serde(default = "default_directions")]
    pub directions: Vec<String>,
    /// Transports: `tcp`, and `udp` for `connect()` of UDP sockets (a UDP
    /// socket that only uses `sendto` is not seen). Default `["tcp"]`.
    #[serde(default = "default_protocols")]
    pub protocols: Vec<String>,
    /// What to report, in the kernel.
    #[serde(default, rename = "match")]
    pub matching: Match,
    /// Report connects that failed (`error.type`, with the peer asked for).
    /// Default `true`.
    #[serde(default = "default_true")]
    pub failed: bool,
    /// Ancestors listed per event in `sonde.process.ancestry`. Default 8.
    #[serde(default = "default_depth")]
    pub ancestry_depth: usize,
    /// Live processes remembered with their ancestry (the rest are read
    /// from `/proc` again when they connect). Default 16384.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// A process connecting to (or accepting from) the same peer and port
    /// again within this window is counted
    /// (`sonde_connections_dropped_total{reason="deduplicated"}`), not
    /// reported: one event per conversation partner for a client that
    /// reconnects in a loop. Failed connects are always reported. `0s`
    /// (default) reports every connection.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "String")]
    pub dedup_window: Duration,
    /// At most this many events a second per cgroup, in the kernel; the
    /// rest are counted (`reason="throttled"`). 0: no limit (default).
    #[serde(default)]
    pub rate_limit: u32,
    /// Report the agent's own connections too. Default `false`.
    #[serde(default)]
    pub include_self: bool,
    /// Time between two emissions of the counters. Default `10s`.
    #[serde(default = "default_interval", with = "sonde_core::config::interval")]
    #[schemars(with = "sonde_core::config::PositiveDuration")]
    pub interval: Duration,
}

impl Default for ConnectionsSourceConfig {
    fn default() -> Self {
        ConnectionsSourceConfig {
            directions: default_directions(),
            protocols: default_protocols(),
            matching: Match::default(),
            failed: true,
            ancestry_depth: default_depth(),
            cache_size: default_cache_size(),
            dedup_window: Duration::ZERO,
            rate_limit: 0,
            include_self: false,
            interval: default_interval(),
        }
    }
}

/// "one or more of: …", with the nearest valid name to the first unknown one.
fn names_message(given: &[String], valid: &[&'static str]) -> String {
    let mut message = format!("one or more of: {}", valid.join(", "));
    if let Some(best) = given
        .iter()
        .find(|g| !valid.contains(&g.as_str()))
        .and_then(|g| did_you_mean(g, valid.iter().copied()))
    {
        message.push_str(&format!(" (did you mean `{best}`?)"));
    }
    message
}

fn cidrs(texts: &[String]) -> Vec<Cidr> {
    texts.iter().filter_map(|t| t.parse().ok()).collect()
}

fn first_bad_cidr(texts: &[String]) -> Option<String> {
    texts.iter().find_map(|t| t.parse::<Cidr>().err())
}

impl ConnectionsSourceConfig {
    /// The policy in the kernel's terms, without the cgroups (ids read at
    /// load) and the agent's pid.
    pub fn policy(&self) -> Policy {
        let has = |list: &[String], name: &str| list.iter().any(|d| d == name);
        let m = &self.matching;
        Policy {
            connect: has(&self.directions, "connect"),
            accept: has(&self.directions, "accept"),
            listen: has(&self.directions, "listen"),
            tcp: has(&self.protocols, "tcp"),
            udp: has(&self.protocols, "udp"),
            failed: self.failed,
            allow: cidrs(&m.cidr),
            deny: cidrs(&m.exclude_cidr),
            ports: m.port.clone(),
            binaries: m.binary.clone(),
            cgroups: Vec::new(),
            exclude_pid: if self.include_self { 0 } else { std::process::id() },
            dedup_ns: self.dedup_window.as_nanos().min(u128::from(u64::MAX)) as u64,
            rate_per_sec: self.rate_limit,
        }
    }
}

impl SourceType for ConnectionsSourceConfig {
    const NAME: &'static str = "connections";
    const EBPF: Option<EbpfSide> = Some(EbpfSide {
        min_kernel: (5, 8),
        attach_points: &[
            "tracepoint syscalls:sys_enter/exit_connect",
            "tracepoint syscalls:sys_exit_{accept,accept4}",
            "tracepoint sock:inet_sock_set_state (listen)",
            "not seen: io_uring connects and accepts, sendto(MSG_FASTOPEN), unconnected UDP",
        ],
        trial: || super::bpf::trial().map_err(Into::into),
        conformance: || super::conformance::check().map_err(Into::into),
    });
}

impl SourceConfig for ConnectionsSourceConfig {
    fn outputs(&self) -> EventKinds {
        EventKinds::LOG.union(EventKinds::METRIC)
    }

    /// CAP_BPF and CAP_PERFMON load and attach the programs;
    /// CAP_DAC_READ_SEARCH reads tracepoint ids in tracefs and the cgroups;
    /// CAP_SYS_PTRACE reads other processes' executables in `/proc`.
    fn capabilities(&self) -> CapabilitySet {
        CapabilitySet::of(&[
            Capability::BPF,
            Capability::PERFMON,
            Capability::DAC_READ_SEARCH,
            Capability::SYS_PTRACE,
        ])
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        let m = &self.matching;
        let bad_cidr = first_bad_cidr(&m.cidr);
        let bad_exclude = first_bad_cidr(&m.exclude_cidr);
        check
            .that(
                !self.directions.is_empty() && self.directions.iter().all(|d| DIRECTIONS.contains(&d.as_str())),
                "directions",
                names_message(&self.directions, &DIRECTIONS),
            )
            .that(
                !self.protocols.is_empty() && self.protocols.iter().all(|p| PROTOCOLS.contains(&p.as_str())),
                "protocols",
                names_message(&self.protocols, &PROTOCOLS),
            )
            .that(bad_cidr.is_none(), "match.cidr", bad_cidr.clone().unwrap_or_default())
            .that(
                bad_exclude.is_none(),
                "match.exclude_cidr",
                bad_exclude.clone().unwrap_or_default(),
            )
            .that(m.cidr.len() <= CN_MAX_CIDRS as usize, "match.cidr", "at most 256 CIDRs")
            .that(
                m.exclude_cidr.len() <= CN_MAX_CIDRS as usize,
                "match.exclude_cidr",
                "at most 256 CIDRs",
            )
            .that(m.port.len() <= CN_MAX_PORTS as usize, "match.port", "at most 256 ports")
            .that(
                m.binary.len() <= CN_MAX_BINARIES as usize,
                "match.binary",
                "at most 64 names",
            )
            .that(
                m.cgroup.len() <= CN_MAX_CGROUPS as usize,
                "match.cgroup",
                "at most 256 cgroups",
            )
            .that(
                self.ancestry_depth <= MAX_ANCESTRY_DEPTH,
                "ancestry_depth",
                format!("at most {MAX_ANCESTRY_DEPTH}"),
            )
            .that(self.cache_size >= 1, "cache_size", "must be at least 1");
        check.finish()
    }

    fn build(&self, cx: SourceContext) -> Result<Source, BoxError> {
        let collector = super::collect::Collector::load(self, cx.global.node_name.clone(), &cx)?;
        Ok(Box::pin(super::run::run(collector, self.interval, cx)))
    }
}
