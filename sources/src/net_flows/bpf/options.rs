//! How the net_flows programs are loaded, and why a snapshot of open
//! flows can fail.

use sonde_ebpf::aya::programs::ProgramError;

use super::{FLOW_MAX_TCP, FLOW_MAX_UDP, OBJECT};

/// Why a snapshot of open flows failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The iterator could not be started.
    #[error("cannot start the iter/tcp snapshot of `{OBJECT}`: {}", sonde_ebpf::error::chain(.0))]
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
