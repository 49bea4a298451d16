//! Reads what enrichment needs about a process from a proc filesystem:
//! its start time and name (`stat`), its cgroups (`cgroup`) and its
//! executable (`exe`).
//!
//! The root is configurable because in a pod the host's /proc is mounted
//! elsewhere (`/host/proc`); with `hostPID: true` the pod's own /proc
//! would do too, but a mounted host /proc also works without it.

use std::io;
use std::path::{Path, PathBuf};

use super::cgroup::{self, CgroupInfo};

/// Why a process could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// A file could not be read (`NotFound`: the process has exited).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `stat` was not in the kernel's format.
    #[error("malformed {path}")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
}

impl ProcError {
    /// Whether the process no longer exists.
    pub fn is_gone(&self) -> bool {
        matches!(self, ProcError::Read { source, .. } if source.kind() == io::ErrorKind::NotFound
            || source.raw_os_error() == Some(libc::ESRCH))
    }
}

/// The fields of `/proc/PID/stat` enrichment uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// `comm`: the name, at most 15 bytes.
    pub comm: String,
    /// Start time in clock ticks after boot: with the pid, it names one
    /// process for the whole uptime (a reused pid has a later start time).
    pub start_time: u64,
}

/// Everything read about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Name and start time.
    pub stat: Stat,
    /// Executable path as the process sees it; `None` for kernel threads,
    /// or without the permission to read it (CAP_SYS_PTRACE for other users).
    pub exe: Option<String>,
    /// What its cgroup says.
    pub cgroup: CgroupInfo,
}

/// A proc filesystem at a given root.
#[derive(Clone, Debug)]
pub struct ProcReader {
    root: PathBuf,
}

impl ProcReader {
    /// Reads below `root` (`/proc`, or `/host/proc` in a pod).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProcReader { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn file(&self, pid: u32, name: &str) -> PathBuf {
        let mut path = self.root.join(pid.to_string());
        path.push(name);
        path
    }

    /// `/proc/PID/stat`.
    pub fn stat(&self, pid: u32) -> Result<Stat, ProcError> {
        let path = self.file(pid, "stat");
        let text = std::fs::read_to_string(&path).map_err(|source| ProcError::Read {
            path: path.clone(),
            source,
        })?;
        parse_stat(&text).ok_or(ProcError::Malformed { path })
    }

    /// Reads everything about `pid`. Only `stat` must succeed: the cgroup
    /// file is missing on kernels without cgroups, and `exe` needs
    /// privileges we may not have.
    pub fn process(&self, pid: u32) -> Result<ProcessInfo, ProcError> {
        let stat = self.stat(pid)?;
        let cgroup = std::fs::read_to_string(self.file(pid, "cgroup"))
            .map(|text| cgroup::parse(&text))
            .unwrap_or_default();
        let exe = std::fs::read_link(self.file(pid, "exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
            // The kernel appends this to the path of an executable that was
            // replaced or removed after exec; the path is still the right one.
            .map(|p| p.strip_suffix(" (deleted)").map(str::to_string).unwrap_or(p));
        Ok(ProcessInfo { stat, exe, cgroup })
    }
}

/// Parses `pid (comm) state ppid … starttime …`. `comm` may hold spaces
/// and parentheses, so the fields start after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // After `)`: field 3 (state) is index 0, so field 22 (starttime) is 19.
    let start_time = text.get(close + 1..)?.split_ascii_whitespace().nth(19)?.parse().ok()?;
    Some(Stat { comm, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_comm() {
        let text = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50 18446744073709551615\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.comm, "a) b (c)");
        assert_eq!(stat.start_time, 987654);
        assert_eq!(parse_stat("12 (x) S 1"), None);
    }

    #[test]
    fn reads_this_process() {
        let reader = ProcReader::new("/proc");
        let me = reader.process(std::process::id()).unwrap();
        let again = reader.stat(std::process::id()).unwrap();
        assert_eq!(me.stat, again, "start time is stable");
        assert!(me.exe.is_some());
        assert!(me.stat.start_time > 0);
    }

    #[test]
    fn a_missing_process_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let error = ProcReader::new(dir.path()).process(1).unwrap_err();
        assert!(error.is_gone(), "{error}");
    }
}
