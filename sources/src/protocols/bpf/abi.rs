//! Rust mirrors of `protocols.h` and of the map key user space uses. The
//! constants are generated from the header by the crate's `build.rs`; the
//! structs are checked field by field against the compiled object's BTF
//! (`tests` below).

#![allow(missing_docs)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

include!(concat!(env!("OUT_DIR"), "/protocols_consts.rs"));

/// `AF_INET6`, as the kernel writes it in `family`.
pub const AF_INET6: u16 = 10;

/// `struct proto_event`: the header of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoEvent {
    /// Monotonic clock when the call returned, ns.
    pub timestamp_ns: u64,
    /// Monotonic clock when the connection was first seen, ns.
    pub generation: u64,
    /// Offset of the first byte in its direction's stream.
    pub position: u64,
    pub pid: u32,
    pub tid: u32,
    pub fd: u32,
    /// Bytes the call moved.
    pub length: u32,
    /// Bytes that follow the header.
    pub captured: u32,
    /// `PROTO_EVENT_*`.
    pub kind: u8,
    /// `PROTO_DIR_*`.
    pub direction: u8,
    /// 1 for plaintext from the TLS library.
    pub tls: u8,
    /// `PROTO_ROLE_*`.
    pub role: u8,
    /// A datagram's other end, when the call named it (family 0 if not).
    pub peer_addr: [u8; 16],
    pub peer_port: u16,
    pub peer_family: u16,
    /// 1 on a datagram (UDP) socket.
    pub datagram: u8,
    pub _pad: [u8; 3],
}

// SAFETY: repr(C), 3 × 8 + 5 × 4 + 4 × 1 + 16 + 2 × 2 + 4 bytes, no
// padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for ProtoEvent {}

/// `struct proto_peer`: a connection's endpoints and owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoPeer {
    pub cgroup_id: u64,
    /// Local address (IPv4 in the first 4 bytes).
    pub saddr: [u8; 16],
    /// Remote address.
    pub daddr: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub family: u16,
    /// `PROTO_ROLE_*`.
    pub role: u8,
    /// 1 when first seen at a read or write, not at accept or connect (it
    /// may predate the agent).
    pub discovered: u8,
    /// The process's name (its main thread's comm).
    pub comm: [u8; 16],
}

// SAFETY: repr(C), 8 + 2 × 16 + 3 × 2 + 2 × 1 + 16 bytes, no padding.
unsafe impl sonde_ebpf::aya::Pod for ProtoPeer {}

/// `struct proto_open`: the OPEN record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoOpen {
    pub head: ProtoEvent,
    pub peer: ProtoPeer,
}

// SAFETY: two Pod structs whose sizes are multiples of 8: no padding.
unsafe impl sonde_ebpf::aya::Pod for ProtoOpen {}

/// `struct proto_go_offsets`: where a Go `*tls.Conn` keeps its socket's fd
/// (the value of the per-process map `proto_go_offsets`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ProtoGoOffsets {
    /// `tls.Conn.conn` (a `net.Conn` interface).
    pub conn: u32,
    /// `net.TCPConn`'s `conn.fd` (`*netFD`).
    pub netfd: u32,
    /// `netFD.pfd` (`poll.FD`).
    pub pfd: u32,
    /// `poll.FD.Sysfd`.
    pub sysfd: u32,
}

// SAFETY: repr(C), four u32s.
unsafe impl sonde_ebpf::aya::Pod for ProtoGoOffsets {}

/// `struct conn_key`: the connection map's key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub pid: u32,
    pub fd: u32,
}

// SAFETY: repr(C), two u32s.
unsafe impl sonde_ebpf::aya::Pod for ConnKey {}

/// Size of `struct conn`, the connection map's value, which user space
/// only removes, or marks ignored.
pub const CONN_VALUE_SIZE: usize = 120;
/// Offset of `generation` in `struct conn`.
pub const CONN_GENERATION_OFFSET: usize = 0;
/// Offset of `gate` in `struct conn`.
pub const CONN_GATE_OFFSET: usize = 112;
/// `GATE_IGNORED` of `proto_maps.h`: the connection's bytes are not sent.
pub const GATE_IGNORED: u8 = 2;

/// Reads a `T` from the start of `bytes` (`None` if too short).
pub fn read<T: sonde_ebpf::aya::Pod>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `bytes` holds at least size_of::<T>() bytes, T is Pod (any
    // bit pattern is valid) and read_unaligned needs no alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

impl ProtoEvent {
    /// The datagram's other end, when the call named one.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self.peer_family {
            0 => None,
            family => Some(SocketAddr::new(address(family, &self.peer_addr), self.peer_port)),
        }
    }
}

impl ProtoPeer {
    /// The local end.
    pub fn local(&self) -> SocketAddr {
        SocketAddr::new(address(self.family, &self.saddr), self.sport)
    }

    /// The remote end.
    pub fn remote(&self) -> SocketAddr {
        SocketAddr::new(address(self.family, &self.daddr), self.dport)
    }

    /// The process name.
    pub fn comm(&self) -> String {
        sonde_ebpf::owners::comm_str(&self.comm)
    }
}

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
        for elf in [super::super::ELF, super::super::ELF_TASK, super::super::ELF_ARGS] {
            check_layouts(elf);
        }
    }

    fn check_layouts(elf: &[u8]) {
        let btf = ObjectBtf::from_object(elf);
        sonde_ebpf::assert_layout!(
            btf,
            "proto_event",
            ProtoEvent {
                timestamp_ns,
                generation,
                position,
                pid,
                tid,
                fd,
                length,
                captured,
                kind,
                direction,
                tls,
                role,
                peer_addr,
                peer_port,
                peer_family,
                datagram,
                _pad
            }
        );
        sonde_ebpf::assert_layout!(
            btf,
            "proto_peer",
            ProtoPeer {
                cgroup_id,
                saddr,
                daddr,
                sport,
                dport,
                family,
                role,
                discovered,
                comm
            }
        );
        // proto_open is only a local in the object (no BTF of its own): its
        // two parts are checked above, and it has no padding between them.
        assert_eq!(
            std::mem::size_of::<ProtoOpen>(),
            std::mem::size_of::<ProtoEvent>() + std::mem::size_of::<ProtoPeer>()
        );
        sonde_ebpf::assert_layout!(btf, "conn_key", ConnKey { pid, fd });
        sonde_ebpf::assert_layout!(
            btf,
            "proto_go_offsets",
            ProtoGoOffsets {
                conn,
                netfd,
                pfd,
                sysfd
            }
        );
        let conn = btf.struct_layout("conn");
        assert_eq!(conn.size, CONN_VALUE_SIZE, "size of struct conn");
        assert_eq!(conn.field("generation").offset, CONN_GENERATION_OFFSET);
        assert_eq!(conn.field("gate").offset, CONN_GATE_OFFSET);
    }
}
