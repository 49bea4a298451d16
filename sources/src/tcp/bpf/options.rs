//! How the tcp programs are loaded.

use super::{TCP_MAX_SERIES, TCP_MAX_SOCKETS};

/// How to load the programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Keep the peer's address in each key (one series per peer).
    pub peer_addresses: bool,
    /// Count drops of TCP packets by reason (`skb:kfree_skb`, 5.17+).
    pub drop_reasons: bool,
    /// Capacity of the series map (keys).
    pub max_series: u32,
    /// Capacity of the live-socket map (sockets).
    pub max_sockets: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            peer_addresses: true,
            drop_reasons: true,
            max_series: TCP_MAX_SERIES,
            max_sockets: TCP_MAX_SOCKETS,
        }
    }
}
