//! OOM kills: each `oom:mark_victim` record becomes a `memory.oom_kill`
//! log record, its memory cgroup named by path and controller version.
//!
//! The kernel program reads the memory cgroup's page counter (usage and
//! limit) at the kill, so the figures are those that made the kernel kill,
//! not what is left after. Only the cgroup's id crosses the ring buffer:
//! the path is found here, by walking the memory controller's hierarchy
//! for the directory whose inode is that id (cgroup ids are kernfs inode
//! numbers, in v1 hierarchies as in v2), cached.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sonde_core::event::{keys, Attributes, Event, Log, Severity, SharedStr};

use super::bpf::{comm_str, MemOomEvent};
use crate::clock::Clock;

/// The log record's name.
pub const OOM_KILL: &str = "memory.oom_kill";
/// Counter of OOM kills, by memory cgroup.
pub const OOM_KILLS: &str = "sonde.memory.oom_kills";
/// Field: the victim's `oom_score_adj`.
pub const SCORE_ADJ: &str = "sonde.oom.score_adj";
/// Field and attribute: the memory cgroup's path inside its hierarchy.
pub const MEMCG_PATH: &str = "sonde.memory.cgroup.path";
/// Field: `v1` or `v2`, the hierarchy holding the memory controller.
pub const MEMCG_CONTROLLER: &str = "sonde.memory.cgroup.controller";
/// Field: the memory cgroup's limit at the kill, bytes (absent: unlimited).
pub const MEMCG_LIMIT: &str = "sonde.memory.cgroup.limit";
/// Field: the memory cgroup's usage at the kill, bytes.
pub const MEMCG_USAGE: &str = "sonde.memory.cgroup.usage";
/// Field: whether the cgroup fields are the victim's (`true`) or, on
/// kernels before 6.9, those of the task whose allocation failed.
pub const CGROUP_OF_VICTIM: &str = "sonde.oom.cgroup_of_victim";

/// Where the memory controller is mounted, and which version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryHierarchy {
    /// The mount point (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup`).
    pub root: PathBuf,
    /// `v1` or `v2`.
    pub version: &'static str,
}

impl MemoryHierarchy {
    /// Finds it in `/proc/self/mountinfo`: a cgroup (v1) mount with the
    /// `memory` option, else the cgroup2 mount.
    pub fn find() -> Option<MemoryHierarchy> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        Self::from_mountinfo(&text)
    }

    /// Parses mountinfo text (see `proc(5)`).
    pub fn from_mountinfo(text: &str) -> Option<MemoryHierarchy> {
        let mut v2 = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fs_type = right.next()?;
            let options = right.nth(1).unwrap_or("");
            match fs_type {
                "cgroup" if options.split(',').any(|o| o == "memory") => {
                    return Some(MemoryHierarchy {
                        root: PathBuf::from(mount_point),
                        version: "v1",
                    })
                }
                "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(mount_point)),
                _ => {}
            }
        }
        v2.map(|root| MemoryHierarchy { root, version: "v2" })
    }
}

/// Turns OOM records into log records and counts kills per cgroup.
#[derive(Debug)]
pub struct OomReporter {
    hierarchy: Option<MemoryHierarchy>,
    paths: HashMap<u64, String>,
    page_size: u64,
    /// Kills so far, by memory cgroup path (a counter: never reset).
    pub kills: HashMap<String, u64>,
}

impl OomReporter {
    /// A reporter for this host's memory hierarchy.
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        OomReporter {
            hierarchy: MemoryHierarchy::find(),
            paths: HashMap::new(),
            page_size: u64::try_from(page_size).unwrap_or(4096),
            kills: HashMap::new(),
        }
    }

    /// The path of memory cgroup `id` inside the hierarchy (`/` for the
    /// root), found by inode; `None` when gone or unknown.
    fn path_of(&mut self, id: u64) -> Option<String> {
        if let Some(path) = self.paths.get(&id) {
            return Some(path.clone());
        }
        let root = self.hierarchy.as_ref()?.root.clone();
        let found = find_inode(&root, id)?;
        let relative = found.strip_prefix(&root).ok()?;
        let path = format!("/{}", relative.display());
        self.paths.insert(id, path.clone());
        Some(path)
    }

    /// The log record of one kill (and its count).
    pub fn report(&mut self, oom: &MemOomEvent, clock: &Clock, node: &SharedStr) -> Event {
        let mut comm = comm_str(&oom.comm).to_string();
        if comm.is_empty() {
            // Before 6.9 only the pid is known: the victim may still be
            // dying, its name still readable.
            comm = std::fs::read_to_string(format!("/proc/{}/comm", oom.pid))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_default();
        }
        let memcg = if oom.memcg_id != 0 {
            self.path_of(oom.memcg_id)
        } else {
            None
        };
        let mut attributes = Attributes::new().with(keys::PID, oom.pid);
        if !comm.is_empty() {
            attributes.insert(keys::COMM, comm.clone());
        }
        if oom.cgroup_id != 0 {
            attributes.insert(keys::CGROUP_ID, oom.cgroup_id);
        }
        attributes.insert(keys::node(), node.clone());
        let mut fields = Attributes::new().with(CGROUP_OF_VICTIM, oom.from_victim != 0);
        if oom.from_victim != 0 {
            fields.insert(SCORE_ADJ, i64::from(oom.oom_score_adj));
            fields.insert("process.user.id", i64::from(oom.uid));
        }
        let usage = oom.memcg_usage_pages.saturating_mul(self.page_size);
        // PAGE_COUNTER_MAX (LONG_MAX / PAGE_SIZE) means no limit.
        let limit = (oom.memcg_max_pages < (i64::MAX as u64) / self.page_size)
            .then(|| oom.memcg_max_pages.saturating_mul(self.page_size));
        if oom.memcg_id != 0 {
            fields.insert(MEMCG_USAGE, usage);
            if let Some(limit) = limit {
                fields.insert(MEMCG_LIMIT, limit);
            }
            if let Some(hierarchy) = &self.hierarchy {
                fields.insert(MEMCG_CONTROLLER, hierarchy.version);
            }
        }
        let path = memcg.clone().unwrap_or_else(|| "[unknown]".to_string());
        if memcg.is_some() {
            fields.insert(MEMCG_PATH, path.clone());
        }
        *self.kills.entry(path.clone()).or_default() += 1;
        let limit_text = limit.map_or("no limit".to_string(), |l| format!("limit {} MiB", l >> 20));
        let message = format!(
            "OOM kill: {} (pid {}) in memory cgroup {path}, usage {} MiB, {limit_text}",
            if comm.is_empty() { "?" } else { &comm },
            oom.pid,
            usage >> 20,
        );
        let mut log = Log::new(OOM_KILL).with_severity(Severity::Warn).with_message(message);
        log.fields = fields;
        log.attributes = attributes;
        log.timestamp = clock.wall(oom.mono_ns);
        Event::from(log)
    }
}

impl Default for OomReporter {
    fn default() -> Self {
        Self::new()
    }
}

/// The directory under `root` whose inode is `inode` (breadth first: the
/// cgroups that get OOM-killed are seldom deep).
fn find_inode(root: &Path, inode: u64) -> Option<PathBuf> {
    let mut queue = std::collections::VecDeque::from([root.to_path_buf()]);
    while let Some(dir) = queue.pop_front() {
        if std::fs::metadata(&dir).is_ok_and(|m| m.ino() == inode) {
            return Some(dir);
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                queue.push_back(entry.path());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_memory_mount_on_hybrid_hosts() {
        let text = "\
35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 25 0:31 / /sys/fs/cgroup/cpu rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
37 25 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
";
        assert_eq!(
            MemoryHierarchy::from_mountinfo(text),
            Some(MemoryHierarchy {
                root: "/sys/fs/cgroup/memory".into(),
                version: "v1"
            })
        );
    }

    #[test]
    fn falls_back_to_cgroup2() {
        let text =
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            MemoryHierarchy::from_mountinfo(text),
            Some(MemoryHierarchy {
                root: "/sys/fs/cgroup".into(),
                version: "v2"
            })
        );
        assert_eq!(MemoryHierarchy::from_mountinfo(""), None);
    }

    #[test]
    fn finds_a_directory_by_inode() {
        let dir = std::env::temp_dir().join(format!("sonde-oom-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        let inode = std::fs::metadata(dir.join("a/b")).unwrap().ino();
        assert_eq!(find_inode(&dir, inode), Some(dir.join("a/b")));
        assert_eq!(find_inode(&dir, u64::MAX), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
