//! Process identity and ancestry, kept in user space: the reusable part
//! of the `process` source (other sources that report a process, such as
//! `connections`, ask it who a pid is and where it comes from).
//!
//! # Identity
//!
//! A process image is identified by `(pid, key_ns)`: `key_ns` is the boot
//! time (`CLOCK_BOOTTIME`, ns) of its exec, or of its fork when it never
//! exec'd, as the kernel programs stamp it; a process that predates the
//! programs uses its start time read from `/proc` (clock-tick precision).
//! [`exec_id`] makes the node-wide stable id `node:key_ns:pid` from it:
//! unique across pid reuse (a reused pid has a later key) and across
//! execs of one process (each exec has its own time), the same in the
//! exec, the exit and every other source's events of that image.
//!
//! # The cache
//!
//! [`Ancestry`] maps each live pid to its [`Process`]; each process holds
//! its parent (`Arc`), so a chain stays readable after its members exit
//! and is freed when the last descendant goes (reference counting, as
//! Tetragon's cache). Bounded: at most `capacity` live processes; beyond
//! that new ones are not cached (counted in [`AncestryCounts::full`]) and
//! are read from `/proc` when asked for.
//!
//! - [`Ancestry::bootstrap`] reads every process of `/proc` at start
//!   (origin [`Origin::Procfs`]), parents linked;
//! - [`Ancestry::exec`], [`Ancestry::fork`], [`Ancestry::exit`] follow the
//!   kernel's records, in the order the ring buffer delivers them;
//! - [`Ancestry::lookup`] answers "who is pid P now", from the cache or,
//!   failing that, from `/proc`;
//! - [`Process::ancestors`] walks the parent chain.
//!
//! A parent the records never introduced (a child forked before the
//! programs, a record lost) is read from `/proc` while it lives; when it
//! is gone too, the chain stops there ([`AncestryCounts::unknown_parents`]).
//! Parents are the original ones: a process reparented to init or a
//! subreaper keeps the parent it was born to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};

use sonde_core::event::SharedStr;

use super::procfs::{self, ProcStat};

/// Where a process' entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// Its exec record.
    Exec,
    /// Its fork record, or a child known to have forked after the
    /// programs started (it has a kernel key) and never exec'd since.
    Fork,
    /// Read from `/proc`: it predates the programs.
    Procfs,
    /// Neither seen nor readable: only what its exit record said.
    Unknown,
}

impl Origin {
    /// `exec`, `fork`, `procfs` or `unknown`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Origin::Exec => "exec",
            Origin::Fork => "fork",
            Origin::Procfs => "procfs",
            Origin::Unknown => "unknown",
        }
    }
}

/// One process image.
#[derive(Debug)]
pub struct Process {
    /// Process id.
    pub pid: u32,
    /// Parent's process id (at birth).
    pub ppid: u32,
    /// `node:key_ns:pid` ([`exec_id`]).
    pub exec_id: SharedStr,
    /// Identity time, boot ns (see the module doc).
    pub key_ns: u64,
    /// Start of the process, boot ns (tick precision from `/proc`).
    pub start_ns: u64,
    /// The executable's path; empty when unknown.
    pub binary: SharedStr,
    /// Its name (comm).
    pub name: SharedStr,
    /// Its cgroup v2 id (0: unknown).
    pub cgroup_id: u64,
    /// Where this entry came from.
    pub origin: Origin,
    /// Its parent, when known.
    pub parent: Option<Arc<Process>>,
}

impl Process {
    /// Its parent, grandparent … (nearest first), as far as known.
    pub fn ancestors(&self) -> impl Iterator<Item = &Process> {
        std::iter::successors(self.parent.as_deref(), |p| p.parent.as_deref())
    }
}

/// The stable id of a process image: `node:key_ns:pid`.
pub fn exec_id(node: &str, key_ns: u64, pid: u32) -> SharedStr {
    format!("{node}:{key_ns}:{pid}").into()
}

/// What the kernel says about a process or its parent: its pid, its
/// identity time (0 when the kernel did not know it) and its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    /// Process id.
    pub pid: u32,
    /// Identity time, boot ns; 0 unknown.
    pub key_ns: u64,
    /// Start, boot ns.
    pub start_ns: u64,
}

/// A process the kernel reported (exec, fork or exit).
#[derive(Clone, Debug, Default)]
pub struct Reported {
    /// The process.
    pub id: Identity,
    /// Its parent.
    pub parent: Identity,
    /// The executable (exec); empty for a fork or exit.
    pub binary: SharedStr,
    /// Its name (comm).
    pub name: SharedStr,
    /// cgroup v2 id.
    pub cgroup_id: u64,
}

/// Counts since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AncestryCounts {
    /// Processes not cached because the cache was full.
    pub full: u64,
    /// Parents neither cached nor readable from `/proc`.
    pub unknown_parents: u64,
    /// Processes read from `/proc` (bootstrap and fallbacks).
    pub procfs_reads: u64,
}

/// The bounded cache of live processes (see the module doc).
#[derive(Debug)]
pub struct Ancestry {
    node: SharedStr,
    live: HashMap<u32, Arc<Process>>,
    capacity: usize,
    proc_root: PathBuf,
    tick_ns: u64,
    counts: AncestryCounts,
    publish: bool,
}

/// The live processes of the caches that publish ([`Ancestry::publish`]:
/// the `process` source's), for the agent's other sources: a process they
/// report is then named by the same `sonde.process.exec_id` as in its exec.
fn published() -> &'static RwLock<HashMap<u32, Arc<Process>>> {
    static PUBLISHED: OnceLock<RwLock<HashMap<u32, Arc<Process>>>> = OnceLock::new();
    PUBLISHED.get_or_init(RwLock::default)
}

/// The process `pid` as a running `process` source knows it (`None`
/// without one, or before its record of `pid` was read).
pub fn published_process(pid: u32) -> Option<Arc<Process>> {
    published().read().ok()?.get(&pid).cloned()
}

/// How many `/proc` parents one lookup may read (a chain of processes the
/// records never introduced).
const MAX_PROCFS_DEPTH: usize = 64;

impl Ancestry {
    /// An empty cache of at most `capacity` live processes, reading
    /// `proc_root` (`/proc`) for the ones it was not told about.
    pub fn new(node: SharedStr, capacity: usize, proc_root: &Path) -> Self {
        Ancestry {
            node,
            live: HashMap::new(),
            capacity: capacity.max(1),
            proc_root: proc_root.to_path_buf(),
            tick_ns: procfs::tick_ns(),
            counts: AncestryCounts::default(),
            publish: false,
        }
    }

    /// Shares this cache's processes with the agent's other sources
    /// ([`published_process`]), from now on.
    pub fn publish(&mut self) {
        self.publish = true;
        if let Ok(mut shared) = published().write() {
            shared.extend(self.live.iter().map(|(pid, p)| (*pid, Arc::clone(p))));
        }
    }

    /// Drops `pid`'s entry (a cache that does not follow execs, when it
    /// learns that `pid` is another image now).
    pub fn forget(&mut self, pid: u32) {
        self.live.remove(&pid);
    }

    /// Clock ticks of `/proc` start times, ns.
    pub fn tick_ns(&self) -> u64 {
        self.tick_ns
    }

    /// Live processes cached.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Counts since start.
    pub fn counts(&self) -> AncestryCounts {
        self.counts
    }

    /// The node name in exec ids.
    pub fn node(&self) -> &SharedStr {
        &self.node
    }

    /// Reads every process of `/proc` (kernel threads aside), oldest
    /// first so that parents are linked. Call after the programs are
    /// attached: a process that execs meanwhile is then also reported,
    /// and its record replaces what `/proc` said. Returns how many.
    pub fn bootstrap(&mut self) -> usize {
        let mut all: Vec<ProcStat> = procfs::pids(&self.proc_root)
            .into_iter()
            .filter_map(|pid| procfs::read(&self.proc_root, pid))
            .filter(|p| !p.kernel_thread)
            .collect();
        all.sort_by_key(|p| (p.start_ticks, p.pid));
        let n = all.len();
        for stat in all {
            self.counts.procfs_reads += 1;
            let parent = self.live.get(&stat.ppid).cloned();
            let process = self.procfs_entry(&stat, 0, parent);
            self.insert(process);
        }
        n
    }

    /// The live process `pid` in the cache.
    pub fn get(&self, pid: u32) -> Option<&Arc<Process>> {
        self.live.get(&pid)
    }

    /// Who `pid` is now: the cached process, or else what `/proc` says
    /// (then cached, origin [`Origin::Procfs`]). `None` when gone.
    pub fn lookup(&mut self, pid: u32) -> Option<Arc<Process>> {
        if let Some(process) = self.live.get(&pid) {
            return Some(Arc::clone(process));
        }
        self.read_procfs(
            Identity {
                pid,
                ..Identity::default()
            },
            0,
        )
    }

    /// A process exec'd: a new image of `reported.id.pid`.
    pub fn exec(&mut self, reported: &Reported) -> Arc<Process> {
        let parent = self.parent(&reported.parent);
        let process = Arc::new(Process {
            pid: reported.id.pid,
            ppid: reported.parent.pid,
            exec_id: exec_id(&self.node, reported.id.key_ns, reported.id.pid),
            key_ns: reported.id.key_ns,
            start_ns: reported.id.start_ns,
            binary: reported.binary.clone(),
            name: reported.name.clone(),
            cgroup_id: reported.cgroup_id,
            origin: Origin::Exec,
            parent,
        });
        self.insert(Arc::clone(&process));
        process
    }

    /// A new process (forked, not exec'd yet): its parent's image.
    pub fn fork(&mut self, reported: &Reported) -> Arc<Process> {
        let process = Arc::new(self.forked(reported));
        self.insert(Arc::clone(&process));
        process
    }

    /// A process exited: its entry leaves the cache (its descendants keep
    /// it in their chains). A process the cache did not know is made from
    /// the record: a child that never exec'd (its parent's image), or, with
    /// no kernel key, one of unknown origin.
    pub fn exit(&mut self, reported: &Reported) -> Arc<Process> {
        let id = reported.id;
        if let Some(process) = self.live.get(&id.pid) {
            if self.same(process, id.key_ns, id.start_ns) {
                let process = self.live.remove(&id.pid).expect("just found");
                if self.publish {
                    if let Ok(mut shared) = published().write() {
                        if shared.get(&id.pid).is_some_and(|p| p.exec_id == process.exec_id) {
                            shared.remove(&id.pid);
                        }
                    }
                }
                return process;
            }
        }
        let mut process = self.forked(reported);
        if id.key_ns == 0 {
            process.origin = Origin::Unknown;
            process.key_ns = id.start_ns;
            process.exec_id = exec_id(&self.node, id.start_ns, id.pid);
            if process.binary.is_empty() {
                process.binary = reported.name.clone();
            }
        }
        Arc::new(process)
    }

    /// A process from a fork record (or an exit with a kernel key): its
    /// parent's binary.
    fn forked(&mut self, reported: &Reported) -> Process {
        let parent = self.parent(&reported.parent);
        let binary = parent.as_ref().map(|p| p.binary.clone()).unwrap_or_default();
        Process {
            pid: reported.id.pid,
            ppid: reported.parent.pid,
            exec_id: exec_id(&self.node, reported.id.key_ns, reported.id.pid),
            key_ns: reported.id.key_ns,
            start_ns: reported.id.start_ns,
            binary,
            name: reported.name.clone(),
            cgroup_id: reported.cgroup_id,
            origin: Origin::Fork,
            parent,
        }
    }

    fn insert(&mut self, process: Arc<Process>) {
        if self.live.len() >= self.capacity && !self.live.contains_key(&process.pid) {
            self.counts.full += 1;
            return;
        }
        if self.publish {
            if let Ok(mut shared) = published().write() {
                shared.insert(process.pid, Arc::clone(&process));
            }
        }
        self.live.insert(process.pid, process);
    }

    /// Whether `process` is the image the kernel calls (`key_ns`,
    /// `start_ns`): the same key, or, with no key or another image of the
    /// same process (an exec whose record was lost), the same start tick.
    fn same(&self, process: &Process, key_ns: u64, start_ns: u64) -> bool {
        (key_ns != 0 && process.key_ns == key_ns) || process.start_ns / self.tick_ns == start_ns / self.tick_ns
    }

    /// The parent the kernel named, from the cache or `/proc`.
    fn parent(&mut self, parent: &Identity) -> Option<Arc<Process>> {
        if parent.pid == 0 {
            return None;
        }
        if let Some(process) = self.live.get(&parent.pid) {
            if self.same(process, parent.key_ns, parent.start_ns) {
                return Some(Arc::clone(process));
            }
        }
        let found = self.read_procfs(*parent, 0);
        if found.is_none() {
            self.counts.unknown_parents += 1;
        }
        found
    }

    /// Reads `id.pid` and its unknown ancestors from `/proc` and caches
    /// them. With a kernel key (`id.key_ns`), the process forked after the
    /// programs started: origin [`Origin::Fork`], that key; else
    /// [`Origin::Procfs`]. `None` when gone or no longer that process.
    fn read_procfs(&mut self, id: Identity, depth: usize) -> Option<Arc<Process>> {
        if depth >= MAX_PROCFS_DEPTH {
            return None;
        }
        let stat = procfs::read(&self.proc_root, id.pid)?;
        if stat.kernel_thread || (id.start_ns != 0 && stat.start_ticks != id.start_ns / self.tick_ns) {
            return None;
        }
        self.counts.procfs_reads += 1;
        let parent = match self.live.get(&stat.ppid) {
            Some(p) => Some(Arc::clone(p)),
            None if stat.ppid != 0 => self.read_procfs(
                Identity {
                    pid: stat.ppid,
                    ..Identity::default()
                },
                depth + 1,
            ),
            None => None,
        };
        let mut process = self.procfs_entry(&stat, id.key_ns, parent);
        if id.key_ns != 0 {
            let p = Arc::get_mut(&mut process).expect("not shared yet");
            p.origin = Origin::Fork;
        }
        self.insert(Arc::clone(&process));
        Some(process)
    }

    fn procfs_entry(&self, stat: &ProcStat, key_ns: u64, parent: Option<Arc<Process>>) -> Arc<Process> {
        let start_ns = stat.start_ticks * self.tick_ns;
        let key_ns = if key_ns != 0 { key_ns } else { start_ns };
        Arc::new(Process {
            pid: stat.pid,
            ppid: stat.ppid,
            exec_id: exec_id(&self.node, key_ns, stat.pid),
            key_ns,
            start_ns,
            binary: stat.exe.clone().unwrap_or_default().into(),
            name: stat.name.clone().into(),
            cgroup_id: 0,
            origin: Origin::Procfs,
            parent,
        })
    }
}
