//! What the capture layer (kernel programs, ring buffer, TLS uprobes) hands
//! to the protocol engine: connections and the bytes they carried. The
//! engine never sees kernel structs, only these types, so it is tested and
//! fuzzed without BPF.

use std::net::SocketAddr;

use sonde_core::event::Timestamp;

/// Which way bytes moved, seen from the traced process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Written or sent by the process (write, send*, SSL_write).
    Egress,
    /// Read or received by the process (read, recv*, SSL_read).
    Ingress,
}

impl Direction {
    /// The other way.
    pub fn opposite(self) -> Direction {
        match self {
            Direction::Egress => Direction::Ingress,
            Direction::Ingress => Direction::Egress,
        }
    }

    /// Of a pair kept per direction, (this way's, the other way's).
    pub fn split<'a, T>(self, egress: &'a mut T, ingress: &'a mut T) -> (&'a mut T, &'a mut T) {
        match self {
            Direction::Egress => (egress, ingress),
            Direction::Ingress => (ingress, egress),
        }
    }
}

/// One connection on the node, unique across fd and pid reuse: the kernel
/// stamps `generation` (its clock when it first saw the fd) so a reused
/// (pid, fd) is a new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    /// Process (tgid).
    pub pid: u32,
    /// File descriptor in that process.
    pub fd: u32,
    /// Kernel monotonic ns when the connection was first seen.
    pub generation: u64,
}

/// The traced process's side of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// It called connect().
    Client,
    /// It accepted the connection.
    Server,
    /// It existed before the agent started, or the syscall was not seen:
    /// the engine decides from what is sent first (a request is sent by
    /// the client).
    Unknown,
}

/// What is known about a connection when its first bytes or its open are
/// seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// Identity.
    pub id: ConnId,
    /// Client or server side.
    pub role: Role,
    /// The traced process's own address, when known.
    pub local: Option<SocketAddr>,
    /// The other end, when known.
    pub remote: Option<SocketAddr>,
    /// The process's executable name (not a thread's comm).
    pub comm: String,
    /// Its cgroup (v2 id), 0 when unknown.
    pub cgroup_id: u64,
    /// The connection was open before the agent started (found in /proc).
    pub preexisting: bool,
    /// A datagram (UDP) socket: each chunk is one whole message, and an
    /// unconnected socket's peer comes with each chunk ([`Chunk::peer`]).
    pub datagram: bool,
}

/// Bytes moved by one syscall (or one SSL_read/SSL_write) on a connection.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// The connection.
    pub conn: ConnId,
    /// The thread that moved the bytes (for trace-context nesting).
    pub tid: u32,
    /// Which way.
    pub direction: Direction,
    /// Offset of the first byte in this direction's stream (the kernel
    /// counts every byte moved, captured or not).
    pub position: u64,
    /// Bytes the call moved.
    pub length: u32,
    /// The captured prefix of them (`data.len() <= length`); the rest is a
    /// gap the engine must skip.
    pub data: &'a [u8],
    /// When the call returned (wall clock).
    pub timestamp: Timestamp,
    /// Plaintext from the TLS library rather than the socket.
    pub tls: bool,
    /// The datagram's other end (sendto's destination, recvfrom's
    /// source), on datagram sockets when the call named it.
    pub peer: Option<SocketAddr>,
}
