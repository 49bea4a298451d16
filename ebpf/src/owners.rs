//! Who owns the listening TCP sockets that existed before the programs
//! were loaded, read from `/proc`: the programs learn a listener's owner
//! when `listen()` runs, which for a server started before sonde was long
//! ago. Without this, every connection such a server accepts would count
//! with pid 0. `/proc/net/tcp{,6}` gives each listener's port and socket
//! inode, `/proc/<pid>/fd` which process holds that inode.
//!
//! Sees the sockets of the agent's network namespace and the processes of
//! its pid namespace (Kubernetes: `hostNetwork` and `hostPID`).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `struct sonde_owner` (`bpf/include/sonde_sock.h`): the value of the
/// `tcp_listeners` and `flow_listeners` maps.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOwner {
    /// cgroup v2 id of the process.
    pub cgroup_id: u64,
    /// Process id.
    pub pid: u32,
    /// Padding.
    pub _pad: u32,
    /// The process' comm, NUL-padded.
    pub comm: [u8; 16],
}

// SAFETY: repr(C), 8 + 4 + 4 + 16 bytes, no padding: every bit pattern is valid.
unsafe impl aya::Pod for SockOwner {}

/// Puts the owners of today's listeners into a program's listener map
/// (port → owner), without replacing what the program itself recorded
/// since it was attached. Returns how many were added.
pub fn seed_listeners(map: &mut aya::maps::HashMap<aya::maps::MapData, u32, SockOwner>) -> usize {
    const BPF_NOEXIST: u64 = 1;
    listening_ports()
        .into_iter()
        .filter(|(port, owner)| map.insert(u32::from(*port), owner, BPF_NOEXIST).is_ok())
        .count()
}

/// A NUL-padded kernel comm as text.
pub fn comm_str(comm: &[u8]) -> String {
    let end = comm.iter().position(|b| *b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

/// TCP state `LISTEN` as `/proc/net/tcp` writes it.
const LISTEN: &str = "0A";

/// The owner of every listening TCP port now (IPv4 and IPv6). A port held
/// by several processes (a forked server) goes to the lowest pid, the
/// parent that usually created it.
pub fn listening_ports() -> HashMap<u16, SockOwner> {
    let mut by_inode: HashMap<u64, u16> = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            by_inode.extend(parse_listeners(&text));
        }
    }
    if by_inode.is_empty() {
        return HashMap::new();
    }
    let cgroup_root = crate::system::find_mount("cgroup2");
    let mut owners: HashMap<u16, SockOwner> = HashMap::new();
    for pid in pids() {
        let holds = socket_inodes(pid);
        let ports: HashSet<u16> = holds.iter().filter_map(|inode| by_inode.get(inode).copied()).collect();
        if ports.is_empty() {
            continue;
        }
        let owner = SockOwner {
            cgroup_id: cgroup_root.as_deref().map_or(0, |root| cgroup_id(root, pid)),
            pid,
            _pad: 0,
            comm: comm(pid),
        };
        for port in ports {
            owners
                .entry(port)
                .and_modify(|o| {
                    if pid < o.pid {
                        *o = owner;
                    }
                })
                .or_insert(owner);
        }
    }
    owners
}

/// The owner of every socket inode any process holds now (`/proc/PID/fd`):
/// a socket shared by several processes (a forked server) goes to the
/// lowest pid.
pub fn socket_owners() -> HashMap<u64, SockOwner> {
    let cgroup_root = crate::system::find_mount("cgroup2");
    let mut owners: HashMap<u64, SockOwner> = HashMap::new();
    for pid in pids() {
        let inodes = socket_inodes(pid);
        if inodes.is_empty() {
            continue;
        }
        let owner = SockOwner {
            cgroup_id: cgroup_root.as_deref().map_or(0, |root| cgroup_id(root, pid)),
            pid,
            _pad: 0,
            comm: comm(pid),
        };
        for inode in inodes {
            owners
                .entry(inode)
                .and_modify(|o| {
                    if pid < o.pid {
                        *o = owner;
                    }
                })
                .or_insert(owner);
        }
    }
    owners
}

/// (inode, port) of each listening socket of a `/proc/net/tcp` table.
fn parse_listeners(text: &str) -> Vec<(u64, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&LISTEN) {
                return None;
            }
            let port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
            let inode = fields.get(9)?.parse().ok()?;
            Some((inode, port))
        })
        .collect()
}

fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The inodes of the sockets process `pid` has open.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

fn comm(pid: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        let name = text.trim_end().as_bytes();
        let len = name.len().min(15);
        out[..len].copy_from_slice(&name[..len]);
    }
    out
}

/// The cgroup v2 id of `pid`: the inode of its cgroup's directory, as
/// `bpf_get_current_cgroup_id()` returns it.
fn cgroup_id(root: &Path, pid: u32) -> u64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .and_then(|path| std::fs::metadata(root.join(path.trim_start_matches('/'))).ok())
        .map_or(0, |meta| meta.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listeners_of_proc_net_tcp() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n\
           1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(parse_listeners(text), vec![(12345, 8080)]);
    }

    #[test]
    fn finds_a_listener_of_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let owners = listening_ports();
        let owner = owners.get(&port).expect("our listener is found");
        assert_eq!(owner.pid, std::process::id());
        assert_ne!(owner.comm[0], 0);
    }
}
