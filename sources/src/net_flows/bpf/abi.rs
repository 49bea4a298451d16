//! Rust mirrors of `net_flows.h`. The constants are generated
//! from the header by the crate's `build.rs`; the structs are checked field by field
//! against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

include!(concat!(env!("OUT_DIR"), "/net_flows_consts.rs"));

/// `AF_INET`, as the kernel writes it in `family`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// `struct flow_record`: one TCP flow, open (a snapshot) or ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowRecord {
    /// The socket's kernel address; with `start_ns`, the flow's identity.
    pub sock: u64,
    /// Monotonic clock (`CLOCK_MONOTONIC`) at the start, ns.
    pub start_ns: u64,
    /// Monotonic clock at the close or the snapshot, ns.
    pub end_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub cgroup_id: u64,
    pub packets_sent: u32,
    pub packets_received: u32,
    pub retransmits: u32,
    /// Smoothed RTT, µs (0 = no sample).
    pub srtt_us: u32,
    pub pid: u32,
    /// Local port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
    pub family: u16,
    /// `FLOW_DIR_*`.
    pub direction: u8,
    /// `FLOW_END_*`.
    pub end: u8,
    /// Local address.
    pub saddr: [u8; 16],
    /// Remote address.
    pub daddr: [u8; 16],
    pub comm: [u8; 16],
    pub _reserved: u32,
}

// SAFETY: repr(C), and the fields (u64s, u32s, u16s, u8s and byte arrays,
// then an explicit trailing u32) leave no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for FlowRecord {}

impl FlowRecord {
    /// The record's size in the iterator's output and the ring buffer.
    pub const SIZE: usize = std::mem::size_of::<FlowRecord>();

    /// Parses one record from its bytes (`None` if too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<FlowRecord> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: `bytes` holds at least SIZE bytes, FlowRecord is Pod (any
        // bit pattern is valid) and read_unaligned needs no alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FlowRecord>()) })
    }

    /// The local address.
    pub fn local(&self) -> IpAddr {
        address(self.family, &self.saddr)
    }

    /// The remote address.
    pub fn remote(&self) -> IpAddr {
        address(self.family, &self.daddr)
    }
}

/// `struct udp_flow_key`: one UDP socket and one peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpFlowKey {
    pub cookie: u64,
    pub peer: [u8; 16],
    pub peer_port: u16,
    pub local_port: u16,
    pub family: u16,
    pub _pad: u16,
}

// SAFETY: repr(C), 8 + 16 + 4 × 2 bytes, no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for UdpFlowKey {}

impl UdpFlowKey {
    /// The peer's address.
    pub fn peer(&self) -> IpAddr {
        address(self.family, &self.peer)
    }
}

/// `struct udp_flow`: running totals of one UDP socket and peer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpFlow {
    /// Monotonic clock at the first and the latest packet, ns.
    pub first_ns: u64,
    pub last_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub cgroup_id: u64,
    pub packets_sent: u32,
    pub packets_received: u32,
    pub pid: u32,
    /// `FLOW_DIR_*`.
    pub direction: u8,
    pub _pad: [u8; 3],
    /// The local address.
    pub local: [u8; 16],
    pub comm: [u8; 16],
}

// SAFETY: repr(C), 5 × 8 + 3 × 4 + 4 + 16 + 16 bytes, no padding: every bit
// pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for UdpFlow {}

/// An address as the programs store it: IPv4 in the first 4 bytes for
/// `AF_INET`; IPv4-mapped IPv6 addresses are shown as IPv4.
pub fn address(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        Ipv6Addr::from(*bytes).to_canonical()
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
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
            "flow_record",
            FlowRecord {
                sock,
                start_ns,
                end_ns,
                bytes_sent,
                bytes_received,
                cgroup_id,
                packets_sent,
                packets_received,
                retransmits,
                srtt_us,
                pid,
                sport,
                dport,
                family,
                direction,
                end,
                saddr,
                daddr,
                comm,
                _reserved
            }
        );
        sonde_ebpf::assert_layout!(
            btf,
            "udp_flow_key",
            UdpFlowKey {
                cookie,
                peer,
                peer_port,
                local_port,
                family,
                _pad
            }
        );
        sonde_ebpf::assert_layout!(
            btf,
            "udp_flow",
            UdpFlow {
                first_ns,
                last_ns,
                bytes_sent,
                bytes_received,
                cgroup_id,
                packets_sent,
                packets_received,
                pid,
                direction,
                _pad,
                local,
                comm
            }
        );
    }

    #[test]
    fn records_parse_and_addresses_decode() {
        let mut record = FlowRecord {
            family: AF_INET,
            bytes_sent: 7,
            ..FlowRecord::default()
        };
        record.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        // SAFETY: FlowRecord is Pod; viewing it as bytes is always valid.
        let bytes =
            unsafe { std::slice::from_raw_parts((&record as *const FlowRecord).cast::<u8>(), FlowRecord::SIZE) };
        let parsed = FlowRecord::from_bytes(bytes).unwrap();
        assert_eq!(parsed, record);
        assert_eq!(parsed.local(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(FlowRecord::from_bytes(&bytes[1..]).is_none());
        let mapped = Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped().octets();
        assert_eq!(address(AF_INET6, &mapped), IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
}
