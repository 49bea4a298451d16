//! Rust mirrors of `connections.h`. The constants are generated from the
//! header by the crate's `build.rs`; the struct is checked field by field
//! against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use sonde_ebpf::owners::comm_str;

include!(concat!(env!("OUT_DIR"), "/connections_consts.rs"));

/// AF_INET6 (`cn_event.family`; anything else is AF_INET).
pub const AF_INET6: u16 = 10;
/// IPPROTO_UDP (`cn_event.protocol`; anything else is TCP).
pub const IPPROTO_UDP: u16 = 17;

/// `struct cn_event`: one connect, accept or listen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CnEvent {
    pub mono_ns: u64,
    pub cgroup_id: u64,
    pub start_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub ret: i32,
    pub kind: u32,
    pub family: u16,
    pub protocol: u16,
    pub local_port: u16,
    pub remote_port: u16,
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub comm: [u8; 16],
}

impl CnEvent {
    /// Reads an event from a ring-buffer record (None when too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<CnEvent> {
        if bytes.len() < std::mem::size_of::<CnEvent>() {
            return None;
        }
        // SAFETY: the length is checked; every bit pattern is valid, and
        // read_unaligned copes with the record's alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<CnEvent>()) })
    }

    /// Whether the addresses are IPv6 ones.
    pub fn is_ipv6(&self) -> bool {
        self.family == AF_INET6
    }

    /// This end's address.
    pub fn local(&self) -> IpAddr {
        address(self.is_ipv6(), &self.local_addr)
    }

    /// The peer's address (unspecified for a listener).
    pub fn remote(&self) -> IpAddr {
        address(self.is_ipv6(), &self.remote_addr)
    }
}

fn address(v6: bool, bytes: &[u8; 16]) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn the_event_matches_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "cn_event",
            CnEvent {
                mono_ns,
                cgroup_id,
                start_ns,
                pid,
                tid,
                ppid,
                uid,
                ret,
                kind,
                family,
                protocol,
                local_port,
                remote_port,
                local_addr,
                remote_addr,
                comm
            }
        );
    }

    #[test]
    fn addresses_by_family() {
        let mut e = CnEvent {
            mono_ns: 0,
            cgroup_id: 0,
            start_ns: 0,
            pid: 1,
            tid: 1,
            ppid: 0,
            uid: 0,
            ret: 0,
            kind: CN_CONNECT,
            family: 2,
            protocol: 6,
            local_port: 40000,
            remote_port: 80,
            local_addr: [0; 16],
            remote_addr: [0; 16],
            comm: [0; 16],
        };
        e.remote_addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        assert_eq!(e.remote().to_string(), "10.1.2.3");
        e.family = AF_INET6;
        e.remote_addr = Ipv6Addr::LOCALHOST.octets();
        assert_eq!(e.remote().to_string(), "::1");
    }
}
