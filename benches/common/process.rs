//! A measured process (an agent or a peer tool): its own cgroup v2 for
//! exact CPU time of all its threads, its resident memory, and the kernel
//! run time of the eBPF programs it loaded.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sonde_ebpf::stats;

/// A spawned process, in a cgroup of its own when possible.
pub struct Measured {
    pub child: Child,
    cgroup: Option<PathBuf>,
    /// Ids of the eBPF programs loaded since just before it started.
    pub programs: Vec<u32>,
    before: HashSet<u32>,
}

/// CPU, eBPF and memory figures at one instant (cumulative).
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading {
    pub at: Option<Instant>,
    /// User + system CPU of all its threads, ns.
    pub cpu_ns: u64,
    /// Run time of its eBPF programs (while statistics are on), ns.
    pub bpf_ns: u64,
    /// Runs of its eBPF programs.
    pub bpf_runs: u64,
}

impl Reading {
    /// (CPU %, eBPF %) of one core between `self` and a later `end`.
    pub fn percent_until(&self, end: &Reading) -> (f64, f64) {
        let wall = end.at.unwrap().duration_since(self.at.unwrap()).as_nanos() as f64;
        (
            (end.cpu_ns - self.cpu_ns) as f64 / wall * 100.0,
            (end.bpf_ns - self.bpf_ns) as f64 / wall * 100.0,
        )
    }
}

impl Measured {
    /// Spawns `command` and moves it into a cgroup of its own at once.
    pub fn spawn(command: &mut Command) -> std::io::Result<Measured> {
        let before = stats::loaded_programs().iter().map(|p| p.id).collect();
        let child = command.spawn()?;
        let cgroup = join_cgroup(child.id());
        Ok(Measured {
            child,
            cgroup,
            programs: Vec::new(),
            before,
        })
    }

    /// Records the programs it has loaded so far (call once it is ready).
    pub fn note_programs(&mut self) {
        self.programs = stats::loaded_programs()
            .into_iter()
            .filter(|p| !self.before.contains(&p.id))
            .map(|p| p.id)
            .collect();
    }

    /// Its figures now.
    pub fn read(&self) -> Reading {
        let (bpf_ns, bpf_runs) = self
            .program_stats()
            .iter()
            .fold((0, 0), |(t, n), p| (t + p.run_time_ns, n + p.run_count));
        Reading {
            at: Some(Instant::now()),
            cpu_ns: self.cpu_ns(),
            bpf_ns,
            bpf_runs,
        }
    }

    /// Each of its programs' cumulative statistics now.
    pub fn program_stats(&self) -> Vec<stats::LoadedProgram> {
        stats::loaded_programs()
            .into_iter()
            .filter(|p| self.programs.contains(&p.id))
            .collect()
    }

    /// User + system CPU of all its threads, exited ones included, ns: its
    /// cgroup's `cpu.stat` (µs), else `/proc/PID/stat` (10 ms ticks).
    fn cpu_ns(&self) -> u64 {
        if let Some(cgroup) = &self.cgroup {
            if let Ok(stat) = std::fs::read_to_string(cgroup.join("cpu.stat")) {
                if let Some(usec) = stat.lines().find_map(|l| l.strip_prefix("usage_usec ")) {
                    return usec.trim().parse::<u64>().unwrap_or(0) * 1000;
                }
            }
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        // utime and stime are fields 14 and 15, in USER_HZ (100) ticks.
        let ticks: u64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0);
        ticks * 10_000_000
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Kernel memory of the BPF maps the process holds, in KiB: the sum of
    /// the `memlock` of each of its `bpf-map` descriptors (`fdinfo`).
    pub fn bpf_map_kib(&self) -> u64 {
        let pid = self.child.id();
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return 0;
        };
        let mut bytes = 0u64;
        for fd in fds.flatten() {
            if !std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == "anon_inode:bpf-map") {
                continue;
            }
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy()));
            bytes += info
                .ok()
                .and_then(|i| i.lines().find_map(|l| l.strip_prefix("memlock:"))?.trim().parse().ok())
                .unwrap_or(0);
        }
        bytes / 1024
    }

    /// Stops it with `signal` (again each second: some tools miss one),
    /// SIGKILL after 20 s, and removes its cgroup.
    pub fn stop(mut self, signal: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        'outer: loop {
            let _ = Command::new("kill")
                .args([signal, &self.child.id().to_string()])
                .status();
            for _ in 0..20 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break 'outer;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
        }
        if let Some(cgroup) = &self.cgroup {
            let _ = std::fs::remove_dir(cgroup);
        }
    }
}

/// Where cgroup v2 is mounted: /sys/fs/cgroup, or /sys/fs/cgroup/unified
/// on hybrid (v1 + v2) hosts such as this project's CI machines.
fn cgroup2_root() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"cgroup2"))
        .and_then(|f| f.get(1).map(PathBuf::from))
}

/// Moves `pid` into a new cgroup v2 under the root; `None` where not possible.
fn join_cgroup(pid: u32) -> Option<PathBuf> {
    let root = cgroup2_root()?;
    if !root.join("cgroup.controllers").exists() {
        return None;
    }
    let path = root.join(format!("sonde-bench-{}-{pid}", std::process::id()));
    std::fs::create_dir(&path).ok()?;
    match std::fs::write(path.join("cgroup.procs"), pid.to_string()) {
        Ok(()) => Some(path),
        Err(_) => {
            let _ = std::fs::remove_dir(&path);
            None
        }
    }
}

/// Run time (ns) and runs of each program, by name, between two readings
/// of [`Measured::program_stats`].
pub fn program_deltas(
    start: &[stats::LoadedProgram],
    end: Vec<stats::LoadedProgram>,
) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut programs = std::collections::BTreeMap::<String, (f64, f64)>::new();
    for p in end {
        let (ns0, runs0) = start
            .iter()
            .find(|b| b.id == p.id)
            .map_or((0, 0), |b| (b.run_time_ns, b.run_count));
        let entry = programs.entry(p.name).or_default();
        entry.0 += (p.run_time_ns - ns0) as f64;
        entry.1 += (p.run_count - runs0) as f64;
    }
    programs
}
