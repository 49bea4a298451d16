//! From kernel records to the engine's model: connection identities,
//! roles, wall-clock times; and which connections each process has, so
//! that a process's exit forgets them (here and in the kernel's map).

use foldhash::{HashMap, HashSet};

use sonde_core::event::Timestamp;

use super::bpf::{ProtoEvent, ProtoOpen, Record, PROTO_DIR_EGRESS, PROTO_ROLE_CLIENT, PROTO_ROLE_SERVER};
use super::listeners::Listeners;
use super::model::{Chunk, ConnId, ConnInfo, Direction, Role};
use crate::clock::Clock;

/// What the capture layer feeds: the protocol engine (or a test).
pub trait Consumer {
    /// A connection's first record.
    fn open(&mut self, info: ConnInfo);
    /// Bytes of one call.
    fn data(&mut self, chunk: Chunk<'_>);
    /// The connection ended.
    fn close(&mut self, id: ConnId, at: Timestamp);
}

/// What the kernel's map must forget (connections of exited processes),
/// and processes whose TLS library should be looked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Followups {
    /// (pid, fds) of processes that exited.
    pub exited: Vec<(u32, Vec<u32>)>,
    /// Processes that started a TLS handshake.
    pub encrypted: Vec<u32>,
}

/// Connections announced by the kernel and not yet closed.
#[derive(Debug, Default)]
pub struct Capture {
    open: HashMap<(u32, u32), u64>,
    fds_by_pid: HashMap<u32, HashSet<u32>>,
    /// Records that did not fit the model (data without an OPEN …).
    pub orphans: u64,
}

impl Capture {
    /// Hands one record to `consumer`.
    pub fn handle(
        &mut self,
        record: Record<'_>,
        clock: &Clock,
        listeners: &mut Listeners,
        consumer: &mut impl Consumer,
        followups: &mut Followups,
    ) {
        match record {
            Record::Open(open) => {
                let info = conn_info(&open, listeners);
                let key = (open.head.pid, open.head.fd);
                // A reused fd whose close was not seen: end the old one.
                if let Some(old) = self.open.insert(key, open.head.generation) {
                    if old != open.head.generation {
                        consumer.close(conn_id(&open.head, old), clock.wall(open.head.timestamp_ns));
                    }
                }
                self.fds_by_pid.entry(open.head.pid).or_default().insert(open.head.fd);
                consumer.open(info);
            }
            Record::Data(head, data) => {
                if self.open.get(&(head.pid, head.fd)) != Some(&head.generation) {
                    self.orphans += 1;
                    return;
                }
                consumer.data(Chunk {
                    conn: conn_id(&head, head.generation),
                    tid: head.tid,
                    direction: direction(&head),
                    position: head.position,
                    length: head.length,
                    data,
                    timestamp: clock.wall(head.timestamp_ns),
                    tls: head.tls != 0,
                    peer: head.peer(),
                });
            }
            Record::Close(head) => {
                if self.open.remove(&(head.pid, head.fd)).is_some() {
                    if let Some(fds) = self.fds_by_pid.get_mut(&head.pid) {
                        fds.remove(&head.fd);
                    }
                    consumer.close(conn_id(&head, head.generation), clock.wall(head.timestamp_ns));
                }
            }
            Record::Exit(head) => {
                let fds: Vec<u32> = self.fds_by_pid.remove(&head.pid).into_iter().flatten().collect();
                let at = clock.wall(head.timestamp_ns);
                for fd in &fds {
                    if let Some(generation) = self.open.remove(&(head.pid, *fd)) {
                        consumer.close(
                            ConnId {
                                pid: head.pid,
                                fd: *fd,
                                generation,
                            },
                            at,
                        );
                    }
                }
                followups.exited.push((head.pid, fds));
            }
            Record::Encrypted(head) => followups.encrypted.push(head.pid),
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

fn conn_id(head: &ProtoEvent, generation: u64) -> ConnId {
    ConnId {
        pid: head.pid,
        fd: head.fd,
        generation,
    }
}

fn direction(head: &ProtoEvent) -> Direction {
    if u32::from(head.direction) == PROTO_DIR_EGRESS {
        Direction::Egress
    } else {
        Direction::Ingress
    }
}

/// The model's view of an OPEN record. A connection found mid-stream has
/// no known role: it is a server's when its local port is listening.
fn conn_info(open: &ProtoOpen, listeners: &mut Listeners) -> ConnInfo {
    let peer = &open.peer;
    let datagram = open.head.datagram != 0;
    let role = match u32::from(peer.role) {
        PROTO_ROLE_CLIENT => Role::Client,
        PROTO_ROLE_SERVER => Role::Server,
        // Listening TCP ports say nothing of a UDP socket.
        _ if !datagram && listeners.is_listening(peer.sport) => Role::Server,
        _ => Role::Unknown,
    };
    // An unconnected datagram socket has no other end of its own: each
    // datagram names one.
    let remote = peer.remote();
    let remote = (remote.port() != 0).then_some(remote);
    ConnInfo {
        id: conn_id(&open.head, open.head.generation),
        role,
        local: Some(peer.local()),
        remote,
        comm: peer.comm(),
        cgroup_id: peer.cgroup_id,
        preexisting: peer.discovered != 0,
        datagram,
    }
}
