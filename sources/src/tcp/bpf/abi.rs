//! Rust mirrors of `tcp.h`. The constants are generated from
//! the header by the crate's `build.rs`; the structs are checked field by field against
//! the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

pub use sonde_ebpf::owners::comm_str;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

include!(concat!(env!("OUT_DIR"), "/tcp_consts.rs"));

/// Slots of the connect-latency and RTT histograms.
pub const LATENCY_SLOTS: usize = TCP_LATENCY_SLOTS as usize;

/// `struct tcp_key`: one process, role, service port and peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpKey {
    /// cgroup v2 id of the process (0 when unknown).
    pub cgroup_id: u64,
    /// Process id (0 when unknown).
    pub pid: u32,
    /// Service port: the remote port of a client, the local port of a server.
    pub port: u16,
    /// `TCP_ROLE_*`.
    pub role: u8,
    /// `TCP_FAMILY_*`.
    pub family: u8,
    /// The peer's address, IPv4 in the first 4 bytes; zero when not tracked.
    pub addr: [u8; 16],
    /// The process' comm, NUL-padded.
    pub comm: [u8; 16],
}

// SAFETY: repr(C) with fields of 8, 4, 2, 1, 1, 16 and 16 bytes in that
// order: no padding, and every bit pattern is a valid value.
unsafe impl sonde_ebpf::aya::Pod for TcpKey {}

impl TcpKey {
    /// Which end of the connection the process is.
    pub fn role(&self) -> Role {
        Role::from_raw(self.role)
    }

    /// The peer's address, when the key has one.
    pub fn peer(&self) -> Option<IpAddr> {
        match u32::from(self.family) {
            TCP_FAMILY_V4 if self.addr[..4] != [0; 4] => Some(IpAddr::V4(Ipv4Addr::new(
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            ))),
            TCP_FAMILY_V6 if self.addr != [0; 16] => Some(IpAddr::V6(Ipv6Addr::from(self.addr))),
            _ => None,
        }
    }

    /// `ipv4` or `ipv6` (OpenTelemetry's `network.type`), if known.
    pub fn network_type(&self) -> Option<&'static str> {
        match u32::from(self.family) {
            TCP_FAMILY_V4 => Some("ipv4"),
            TCP_FAMILY_V6 => Some("ipv6"),
            _ => None,
        }
    }

    /// The comm as text (empty when unknown).
    pub fn comm(&self) -> String {
        comm_str(&self.comm)
    }
}

/// `struct tcp_counts`: running totals of one key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpCounts {
    pub opens: u64,
    pub closes: u64,
    pub connect_failures: u64,
    pub retransmits: u64,
    pub resets_sent: u64,
    pub resets_received: u64,
    /// SYN_SENT → ESTABLISHED, log2-ns slots.
    pub connect_ok: [u64; LATENCY_SLOTS],
    /// SYN_SENT → CLOSE, log2-ns slots.
    pub connect_failed: [u64; LATENCY_SLOTS],
    /// Smoothed RTT when the connection left ESTABLISHED, log2-ns slots.
    pub rtt: [u64; LATENCY_SLOTS],
    pub connect_ok_sum_ns: u64,
    pub connect_failed_sum_ns: u64,
    pub rtt_sum_ns: u64,
}

// SAFETY: repr(C), only u64 fields and arrays of u64, no padding: every bit
// pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for TcpCounts {}

impl Default for TcpCounts {
    fn default() -> Self {
        TcpCounts {
            opens: 0,
            closes: 0,
            connect_failures: 0,
            retransmits: 0,
            resets_sent: 0,
            resets_received: 0,
            connect_ok: [0; LATENCY_SLOTS],
            connect_failed: [0; LATENCY_SLOTS],
            rtt: [0; LATENCY_SLOTS],
            connect_ok_sum_ns: 0,
            connect_failed_sum_ns: 0,
            rtt_sum_ns: 0,
        }
    }
}

/// `struct tcp_state_key`: one owner, role, service port and TCP state
/// (the key of the state counts, and what is remembered per socket).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpStateKey {
    /// cgroup v2 id of the owner (0 when unknown).
    pub cgroup_id: u64,
    /// Process id of the owner (0 when unknown).
    pub pid: u32,
    /// Service port: the remote port of a client, the local port of a server.
    pub port: u16,
    /// `TCP_ROLE_*`.
    pub role: u8,
    /// `TCP_STATE_*`.
    pub state: u8,
    /// The owner's comm, NUL-padded.
    pub comm: [u8; 16],
}

// SAFETY: repr(C) with fields of 8, 4, 2, 1, 1 and 16 bytes in that order:
// no padding, and every bit pattern is a valid value.
unsafe impl sonde_ebpf::aya::Pod for TcpStateKey {}

impl TcpStateKey {
    /// Which end of the connection the owner is.
    pub fn role(&self) -> Role {
        Role::from_raw(self.role)
    }

    /// The comm as text (empty when unknown).
    pub fn comm(&self) -> String {
        comm_str(&self.comm)
    }

    /// The key at the start of a `struct sock_state` (`tcp_socks`' value).
    pub fn from_sock_state(value: &[u8]) -> TcpStateKey {
        let mut key = TcpStateKey::default();
        let size = std::mem::size_of::<TcpStateKey>().min(value.len());
        // SAFETY: TcpStateKey is Pod (any bytes are a valid value); at most
        // its size is copied, from a slice at least that long.
        unsafe {
            std::ptr::copy_nonoverlapping(value.as_ptr(), (&mut key as *mut TcpStateKey).cast::<u8>(), size);
        }
        key
    }
}

/// `struct tcp_waiting`: a timewait (TIME_WAIT, orphaned FIN_WAIT2) or half-open socket, as the
/// `tcp_states_waiting` iterator writes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpWaiting {
    /// Service port, host order.
    pub port: u16,
    /// `TCP_ROLE_*`.
    pub role: u8,
    /// `TCP_STATE_TIME_WAIT` or `TCP_STATE_NEW_SYN_RECV`.
    pub state: u8,
}

impl TcpWaiting {
    /// Size of one record in the iterator's output.
    pub const SIZE: usize = std::mem::size_of::<TcpWaiting>();

    /// One record from the iterator's output.
    pub fn from_bytes(bytes: &[u8]) -> Option<TcpWaiting> {
        let b: [u8; 4] = bytes.get(..Self::SIZE)?.try_into().ok()?;
        Some(TcpWaiting {
            port: u16::from_ne_bytes([b[0], b[1]]),
            role: b[2],
            state: b[3],
        })
    }
}

/// The OpenTelemetry `network.connection.state` value of a `TCP_STATE_*`
/// (a half-open request, NEW_SYN_RECV, is `syn_received` as `ss` shows it).
pub fn state_name(state: u8) -> &'static str {
    match u32::from(state) {
        TCP_STATE_ESTABLISHED => "established",
        TCP_STATE_SYN_SENT => "syn_sent",
        TCP_STATE_SYN_RECV | TCP_STATE_NEW_SYN_RECV => "syn_received",
        TCP_STATE_FIN_WAIT1 => "fin_wait_1",
        TCP_STATE_FIN_WAIT2 => "fin_wait_2",
        TCP_STATE_TIME_WAIT => "time_wait",
        TCP_STATE_CLOSE => "closed",
        TCP_STATE_CLOSE_WAIT => "close_wait",
        TCP_STATE_LAST_ACK => "last_ack",
        TCP_STATE_LISTEN => "listen",
        TCP_STATE_CLOSING => "closing",
        _ => "unknown",
    }
}

/// Which end of a connection a process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// It connected (active open).
    Client,
    /// It accepted (passive open).
    Server,
    /// A reset sent for a packet that matched no socket, tuple unknown.
    Unknown,
}

impl Role {
    /// From a `TCP_ROLE_*` value.
    pub fn from_raw(role: u8) -> Role {
        match u32::from(role) {
            TCP_ROLE_CLIENT => Role::Client,
            TCP_ROLE_SERVER => Role::Server,
            _ => Role::Unknown,
        }
    }

    /// The attribute value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "tcp_key",
            TcpKey {
                cgroup_id,
                pid,
                port,
                role,
                family,
                addr,
                comm
            }
        );
        sonde_ebpf::assert_layout!(
            btf,
            "tcp_counts",
            TcpCounts {
                opens,
                closes,
                connect_failures,
                retransmits,
                resets_sent,
                resets_received,
                connect_ok,
                connect_failed,
                rtt,
                connect_ok_sum_ns,
                connect_failed_sum_ns,
                rtt_sum_ns
            }
        );
    }

    #[test]
    fn state_structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "tcp_state_key",
            TcpStateKey {
                cgroup_id,
                pid,
                port,
                role,
                state,
                comm
            }
        );
        sonde_ebpf::assert_layout!(btf, "tcp_waiting", TcpWaiting { port, role, state });
        let rec = TcpWaiting::from_bytes(&[0x50, 0x00, 1, 6]).unwrap();
        assert_eq!((rec.port, rec.role, rec.state), (u16::from_ne_bytes([0x50, 0]), 1, 6));
        assert_eq!(state_name(TCP_STATE_CLOSE_WAIT as u8), "close_wait");
    }

    #[test]
    fn the_state_key_is_read_from_the_start_of_a_socket_entry() {
        let layout = ObjectBtf::from_object(super::super::ELF).struct_layout("sock_state");
        assert_eq!(layout.size, super::super::SOCK_STATE_SIZE);
        let state = layout.field("state");
        assert_eq!((state.offset, state.size), (0, std::mem::size_of::<TcpStateKey>()));
        let key = TcpStateKey {
            cgroup_id: 7,
            pid: 42,
            port: 443,
            role: TCP_ROLE_SERVER as u8,
            state: TCP_STATE_CLOSE_WAIT as u8,
            comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
        };
        let mut value = [0xffu8; super::super::SOCK_STATE_SIZE];
        // SAFETY: TcpStateKey is repr(C) plain data without padding.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&key as *const TcpStateKey).cast::<u8>(),
                std::mem::size_of::<TcpStateKey>(),
            )
        };
        value[..bytes.len()].copy_from_slice(bytes);
        assert_eq!(TcpStateKey::from_sock_state(&value), key);
        // A short value leaves the rest zero instead of reading past it.
        assert_eq!(TcpStateKey::from_sock_state(&value[..8]).cgroup_id, 7);
        assert_eq!(TcpStateKey::from_sock_state(&value[..8]).pid, 0);
    }

    #[test]
    fn keys_decode_peers_and_comms() {
        let mut key = TcpKey {
            family: TCP_FAMILY_V4 as u8,
            role: TCP_ROLE_SERVER as u8,
            ..TcpKey::default()
        };
        assert_eq!(key.peer(), None);
        key.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(key.peer(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(key.role(), Role::Server);
        key.family = TCP_FAMILY_V6 as u8;
        key.addr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(key.peer(), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(key.network_type(), Some("ipv6"));
        key.comm[..4].copy_from_slice(b"curl");
        assert_eq!(key.comm(), "curl");
    }
}
