//! Real cgroup hierarchies laid out as kubelet and the runtimes lay them
//! out, with a real process moved in; removed again on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Where this host mounts cgroup2 (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one) and the v1 `pids` controller.
pub fn mounts() -> (Option<PathBuf>, Option<PathBuf>) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let mut v2 = None;
    let mut v1_pids = None;
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (target, fstype, options) = (fields[1], fields[2], fields[3]);
        if fstype == "cgroup2" && v2.is_none() {
            v2 = Some(PathBuf::from(target));
        }
        if fstype == "cgroup" && options.split(',').any(|o| o == "pids") {
            v1_pids = Some(PathBuf::from(target));
        }
    }
    (v2, v1_pids)
}

/// Whether the tests may create cgroups; if not, whether that is a failure.
pub fn require_root() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("SONDE_REQUIRE_BPF").is_none(),
            "this test needs root to create cgroups"
        );
        eprintln!("skipped: needs root to create cgroups");
    }
    root
}

/// A process inside a cgroup made for the test.
pub struct ContainerProcess {
    pub child: Child,
    /// Directories created, deepest last.
    created: Vec<PathBuf>,
}

impl ContainerProcess {
    /// Creates `root/relative` (each missing level) and moves a new
    /// `sleep` into it.
    pub fn start(root: &Path, relative: &str) -> Self {
        let mut created = Vec::new();
        let mut dir = root.to_path_buf();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            dir.push(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                created.push(dir.clone());
            }
        }
        let child = Command::new("sleep").arg("120").spawn().unwrap();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        ContainerProcess { child, created }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ContainerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A cgroup can be removed once empty; the process just exited.
        for dir in self.created.iter().rev() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}
