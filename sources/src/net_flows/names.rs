//! Process names for flow records. The kernel side records the comm of the
//! thread that owned the socket (`isc-net-0000` for a `dig` worker
//! thread); a record names the process, as `ps` does: the comm of its
//! main thread, `/proc/PID/comm`. The thread's comm stays the fallback for
//! a process that exited before its record was read.

use std::collections::HashMap;
use std::path::PathBuf;

/// Process names read in one round, by pid.
#[derive(Debug)]
pub struct ProcessNames {
    procfs: PathBuf,
    names: HashMap<u32, Option<String>>,
}

impl Default for ProcessNames {
    fn default() -> Self {
        ProcessNames::new(PathBuf::from("/proc"))
    }
}

impl ProcessNames {
    /// Names from `procfs` (`/proc`).
    pub fn new(procfs: PathBuf) -> Self {
        ProcessNames {
            procfs,
            names: HashMap::new(),
        }
    }

    /// The name of process `pid`, or `thread_comm` when it is gone (or
    /// `pid` is 0, unknown).
    pub fn name(&mut self, pid: u32, thread_comm: &str) -> String {
        if pid == 0 {
            return thread_comm.to_string();
        }
        let procfs = &self.procfs;
        let name = self.names.entry(pid).or_insert_with(|| {
            std::fs::read_to_string(procfs.join(pid.to_string()).join("comm"))
                .ok()
                .map(|comm| comm.trim_end_matches('\n').to_string())
                .filter(|comm| !comm.is_empty())
        });
        name.clone().unwrap_or_else(|| thread_comm.to_string())
    }

    /// Forgets the names read: a pid may be reused by the next round.
    pub fn clear(&mut self) {
        self.names.clear();
    }
}
