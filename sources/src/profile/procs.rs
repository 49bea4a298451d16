//! What the source knows of each sampled process, read from `/proc/PID`
//! while it lives: name, executable, cgroup, and its executable memory
//! mappings, so that its stacks can be symbolized after it exits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sonde_core::event::SharedStr;

/// A file as the kernel names it: device and inode (from `/proc/PID/maps`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    /// Device number as `/proc/PID/maps` prints it (`major << 20 | minor` is
    /// not needed: it is only compared).
    pub dev: u64,
    /// Inode number.
    pub inode: u64,
}

/// What an executable mapping holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappingKind {
    /// A file (an executable or shared library).
    File(FileKey),
    /// Anonymous executable memory: JIT code.
    Anon,
    /// The vDSO.
    Vdso,
    /// Another special mapping (`[vsyscall]`, `[uprobes]`).
    Special,
}

/// One executable mapping of a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// Path (in the process' mount namespace) or `[vdso]`; empty for anonymous memory.
    pub path: SharedStr,
    /// What it holds.
    pub kind: MappingKind,
}

impl Mapping {
    /// The file offset of `address` (which must be inside the mapping).
    pub fn file_offset(&self, address: u64) -> u64 {
        address - self.start + self.offset
    }
}

/// Parses the executable mappings of a `/proc/PID/maps` text, sorted by start.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = text.lines().filter_map(parse_maps_line).collect();
    out.sort_by_key(|m| m.start);
    out
}

fn parse_maps_line(line: &str) -> Option<Mapping> {
    // start-end perms offset dev inode [path]; the path may contain spaces.
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    if perms.as_bytes().get(2) != Some(&b'x') {
        return None;
    }
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let dev = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let path = fields.next().unwrap_or("").trim_start();
    let (start, end) = range.split_once('-')?;
    let (start, end) = (u64::from_str_radix(start, 16).ok()?, u64::from_str_radix(end, 16).ok()?);
    let (major, minor) = dev.split_once(':')?;
    let dev = (u64::from_str_radix(major, 16).ok()? << 32) | u64::from_str_radix(minor, 16).ok()?;
    let kind = if inode != 0 && path.starts_with('/') {
        MappingKind::File(FileKey { dev, inode })
    } else if path == "[vdso]" {
        MappingKind::Vdso
    } else if path.is_empty() || path.starts_with("[anon") || path.starts_with("/memfd:") {
        MappingKind::Anon
    } else {
        MappingKind::Special
    };
    Some(Mapping {
        start,
        end,
        offset,
        path: SharedStr::from(path.trim_end_matches(" (deleted)").to_string()),
        kind,
    })
}

/// One process, as last read.
#[derive(Clone, Debug)]
pub struct Process {
    /// Thread group id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22):
    /// tells a reused pid from the process it had before.
    pub start_time: u64,
    /// The process' comm (`/proc/PID/comm`), or a thread's from the kernel.
    pub comm: SharedStr,
    /// The executable's path (`/proc/PID/exe`), when readable.
    pub exe: Option<SharedStr>,
    /// cgroup v2 path, relative to the cgroup root.
    pub cgroup: Option<SharedStr>,
    /// The pid inside the process' own pid namespace (names its perf map).
    pub ns_pid: u32,
    /// Executable mappings, sorted by start; empty when never read.
    pub mappings: Vec<Mapping>,
    /// Whether `/proc/PID` was there at the last look.
    pub alive: bool,
    /// The interval in which it was found gone, if it was.
    pub dead_since: Option<u64>,
    /// Whether the target filters select it.
    pub selected: bool,
}

impl Process {
    /// A process known only by what the kernel said (it exited before
    /// `/proc` was read).
    pub fn gone(pid: u32, comm: &str) -> Process {
        Process {
            pid,
            start_time: 0,
            comm: SharedStr::from(comm.to_string()),
            exe: None,
            cgroup: None,
            ns_pid: pid,
            mappings: Vec::new(),
            alive: false,
            dead_since: None,
            selected: false,
        }
    }

    /// The mapping that holds `address`.
    pub fn mapping(&self, address: u64) -> Option<&Mapping> {
        let index = self.mappings.partition_point(|m| m.start <= address);
        let mapping = self.mappings.get(index.checked_sub(1)?)?;
        (address < mapping.end).then_some(mapping)
    }

    /// Paths under which the agent can open `mapping`'s file, best first:
    /// the mapping itself (works for deleted files and in other mount
    /// namespaces; needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE), then the
    /// path through the process' root.
    pub fn open_candidates(&self, procfs: &Path, mapping: &Mapping) -> [PathBuf; 2] {
        let pid = procfs.join(self.pid.to_string());
        [
            pid.join(format!("map_files/{:x}-{:x}", mapping.start, mapping.end)),
            pid.join("root").join(mapping.path.trim_start_matches('/')),
        ]
    }
}

/// Reads process `pid` from `procfs` (`/proc`): everything but the
/// mappings when `with_maps` is false. `None` when it is gone.
pub fn read_process(procfs: &Path, pid: u32, with_maps: bool) -> Option<Process> {
    let dir = procfs.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
    let mappings = if with_maps {
        parse_maps(&std::fs::read_to_string(dir.join("maps")).ok()?)
    } else {
        Vec::new()
    };
    let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
    Some(Process {
        pid,
        start_time: stat_start_time(&stat).unwrap_or(0),
        comm: SharedStr::from(comm.trim_end_matches('\n').to_string()),
        exe: read_exe(procfs, pid),
        cgroup: std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|text| cgroup_v2_path(&text)),
        ns_pid: ns_pid(&status).unwrap_or(pid),
        mappings,
        alive: true,
        dead_since: None,
        selected: false,
    })
}

/// The executable mappings of process `pid`; `None` when it is gone.
pub fn read_maps(procfs: &Path, pid: u32) -> Option<Vec<Mapping>> {
    let text = std::fs::read_to_string(procfs.join(pid.to_string()).join("maps")).ok()?;
    Some(parse_maps(&text))
}

/// The target of `/proc/PID/exe`.
pub fn read_exe(procfs: &Path, pid: u32) -> Option<SharedStr> {
    let exe = std::fs::read_link(procfs.join(pid.to_string()).join("exe")).ok()?;
    Some(SharedStr::from(
        exe.to_string_lossy().trim_end_matches(" (deleted)").to_string(),
    ))
}

/// Field 22 of `/proc/PID/stat` (after the parenthesised comm, which may hold spaces).
pub fn stat_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the comm start at field 3.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The innermost pid of `NSpid:` in `/proc/PID/status`.
pub fn ns_pid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

/// The cgroup v2 path (`0::/path`) of a `/proc/PID/cgroup` text.
pub fn cgroup_v2_path(text: &str) -> Option<SharedStr> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(SharedStr::from(path.to_string()))
}

/// Every process the source has seen, by pid.
#[derive(Debug, Default)]
pub struct ProcessTable {
    processes: HashMap<u32, Process>,
}

impl ProcessTable {
    /// The process `pid`, if known.
    pub fn get(&self, pid: u32) -> Option<&Process> {
        self.processes.get(&pid)
    }

    /// The process `pid`, if known.
    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Process> {
        self.processes.get_mut(&pid)
    }

    /// Stores `process`, replacing what was known of its pid.
    pub fn insert(&mut self, process: Process) {
        self.processes.insert(process.pid, process);
    }

    /// Removes the processes found dead before `interval - 1`: kept one
    /// more interval, as samples taken just before the exit arrive with
    /// the next drain. Returns their pids.
    pub fn evict_dead(&mut self, interval: u64) -> Vec<u32> {
        let gone: Vec<u32> = self
            .processes
            .values()
            .filter(|p| p.dead_since.is_some_and(|since| since + 1 < interval))
            .map(|p| p.pid)
            .collect();
        for pid in &gone {
            self.processes.remove(pid);
        }
        gone
    }

    /// Number of processes known.
    pub fn len(&self) -> usize {
        self.processes.len()
    }

    /// Whether none is known.
    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }

    /// Every known process.
    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.processes.values()
    }
}
