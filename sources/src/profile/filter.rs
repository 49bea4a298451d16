//! Which processes the source reports: by pid, cgroup path, or comm.
//!
//! The kernel samples every CPU either way (the program's cost does not
//! depend on filters); filters decide what is read from `/proc`,
//! symbolized and emitted.

use super::procs::Process;

/// The target filters of a `profile` source. A process is selected when
/// every given filter matches it (no filter selects every process).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// Process ids.
    pub pids: Vec<u32>,
    /// cgroup v2 paths: a process in one of them or below is selected.
    pub cgroups: Vec<String>,
    /// Glob patterns (`*`, `?`) on the process' comm.
    pub comms: Vec<String>,
}

impl Targets {
    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.cgroups.is_empty() && self.comms.is_empty()
    }

    /// Whether the filters need the process' cgroup (read from `/proc`).
    pub fn need_cgroup(&self) -> bool {
        !self.cgroups.is_empty()
    }

    /// Whether `process` is selected.
    pub fn matches(&self, process: &Process) -> bool {
        if !self.pids.is_empty() && !self.pids.contains(&process.pid) {
            return false;
        }
        if !self.comms.is_empty() && !self.comms.iter().any(|p| glob(p, &process.comm)) {
            return false;
        }
        if !self.cgroups.is_empty() {
            let Some(cgroup) = &process.cgroup else { return false };
            if !self.cgroups.iter().any(|c| under(cgroup, c)) {
                return false;
            }
        }
        true
    }
}

/// Whether cgroup path `path` is `parent` or below it.
fn under(path: &str, parent: &str) -> bool {
    let parent = parent.trim_end_matches('/');
    if parent.is_empty() {
        return true;
    }
    path == parent || path.strip_prefix(parent).is_some_and(|rest| rest.starts_with('/'))
}

/// Shell-style glob: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is retried from.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
