//! What `/proc` says about one process, for the processes that predate the
//! programs (read once at start) and for parents the records did not
//! introduce: pid, parent, start time, executable, name, credentials and
//! cgroup. A process gone meanwhile reads as `None`.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `PF_KTHREAD` in `/proc/PID/stat`'s flags: a kernel thread.
const PF_KTHREAD: u64 = 0x0020_0000;

/// One process, as `/proc` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// Start, in clock ticks since boot (`stat` field 22).
    pub start_ticks: u64,
    /// Its name (`comm`).
    pub name: String,
    /// The executable's path (`exe`), when readable.
    pub exe: Option<String>,
    /// Real and effective uid.
    pub uid: Option<(u32, u32)>,
    /// Its cgroup v2 path (`0::` line of `cgroup`).
    pub cgroup_path: Option<String>,
    /// A kernel thread.
    pub kernel_thread: bool,
}

/// Nanoseconds per clock tick (`sysconf(_SC_CLK_TCK)`, 100 Hz nearly
/// everywhere): the resolution of start times read from `/proc`.
pub fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

/// Every pid in `root` (`/proc`) now.
pub fn pids(root: &Path) -> Vec<u32> {
    std::fs::read_dir(root)
        .map(|dir| dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Process `pid` as `root` (`/proc`) shows it; `None` when gone.
pub fn read(root: &Path, pid: u32) -> Option<ProcStat> {
    let dir = root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let mut process = parse_stat(&stat)?;
    process.exe = std::fs::read_link(dir.join("exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    process.uid = std::fs::read_to_string(dir.join("status")).ok().and_then(|s| {
        let line = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
        let mut ids = line.split_whitespace().filter_map(|v| v.parse().ok());
        Some((ids.next()?, ids.next()?))
    });
    process.cgroup_path = std::fs::read_to_string(dir.join("cgroup"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string));
    Some(process)
}

/// Parses `/proc/PID/stat` (the name may hold spaces and parentheses: it
/// ends at the last `)`).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let name = text.get(open + 1..close)?.to_string();
    // Fields from 3 (state) on.
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        ppid: field(4)? as u32,
        start_ticks: field(22)?,
        name,
        kernel_thread: field(9)? & PF_KTHREAD != 0,
        ..ProcStat::default()
    })
}

/// The cgroup v2 id of a cgroup path (the inode of its directory under the
/// hierarchy's root, as `bpf_get_current_cgroup_id()` returns it).
pub fn cgroup_id(cgroup_root: &Path, path: &str) -> Option<u64> {
    std::fs::metadata(cgroup_root.join(path.trim_start_matches('/')))
        .ok()
        .map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_hard_name() {
        let text = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        let stat = parse_stat(text).unwrap();
        assert_eq!((stat.pid, stat.ppid, stat.start_ticks), (4242, 17, 123456));
        assert_eq!(stat.name, "a (b) c");
        assert!(!stat.kernel_thread);
    }

    #[test]
    fn reads_this_process() {
        let me = read(Path::new("/proc"), std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert!(me.exe.is_some() && me.start_ticks > 0);
    }
}
