//! `source "memory"` under memory pressure, against the real kernel (needs
//! root): page faults of a process checked against its own `/proc/PID/stat`
//! counters, an OOM kill in a memory cgroup with a 64 MiB limit checked
//! against the cgroup's and the node's OOM-kill counters, and reclaim
//! stalls attributed to the cgroup that stalled.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use sonde_core::event::{keys, Event, Log, MetricValue, Value};
use sonde_ebpf::testing::bpf_available_or_skip;
use sonde_sources::memory::oom::{
    MemoryHierarchy, MEMCG_CONTROLLER, MEMCG_LIMIT, MEMCG_PATH, MEMCG_USAGE, OOM_KILL, SCORE_ADJ,
};
use sonde_sources::memory::pressure::{FAULT_TYPE, PAGE_FAULTS, RECLAIM_KIND, RECLAIM_STALL};
use sonde_sources::memory::{Collector, MemorySourceConfig};

/// A Python child that, on each line it reads, runs its next phase: touch
/// `pages` fresh anonymous pages; then read a file through a fresh mapping
/// (its page cache dropped first, so the faults are major).
const TOUCHER: &str = r#"
import mmap, os, sys
pages, path = int(sys.argv[1]), sys.argv[2]
print("ready", flush=True)
sys.stdin.readline()
m = mmap.mmap(-1, pages * 4096)
for i in range(0, pages * 4096, 4096):
    m[i] = 1
print("touched", flush=True)
sys.stdin.readline()
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
f = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
total = sum(f[i] for i in range(0, len(f), 4096))
print("read", flush=True)
sys.stdin.readline()
"#;

struct Toucher {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Toucher {
    fn start(pages: usize, file: &Path) -> Toucher {
        let mut child = Command::new("python3")
            .args(["-c", TOUCHER, &pages.to_string()])
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut toucher = Toucher { child, out };
        assert_eq!(toucher.line(), "ready");
        toucher
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    fn step(&mut self) -> String {
        self.child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
        self.line()
    }

    /// (minflt, majflt) from `/proc/PID/stat` (fields 10 and 12).
    fn proc_faults(&self) -> (u64, u64) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        // After the comm: field 3 is fields[0], so field n is fields[n - 3].
        (fields[7].parse().unwrap(), fields[9].parse().unwrap())
    }
}

impl Drop for Toucher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The faults of `kind` sonde counted for `pid`, all stacks together.
fn faults_of(events: &[Event], pid: u32, kind: &str) -> u64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m)
                if m.name.as_str() == PAGE_FAULTS
                    && m.attributes.get(keys::PID) == Some(&Value::from(pid))
                    && m.attributes.get(FAULT_TYPE).and_then(|v| v.as_str()) == Some(kind) =>
            {
                match m.value {
                    MetricValue::Counter { value } => Some(value as u64),
                    _ => None,
                }
            }
            _ => None,
        })
        .sum()
}

/// Minor and major faults of a process, counted at every fault (period 1),
/// equal the kernel's own per-process counters over the same phases.
#[test]
fn page_faults_equal_the_process_counters() {
    let test = "page_faults_equal_the_process_counters";
    if !bpf_available_or_skip(test) {
        return;
    }
    const PAGES: usize = 5000;
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, vec![7u8; 8 << 20]).unwrap();
    // Written back, so that dropping its page cache drops every page.
    std::fs::File::open(&file).unwrap().sync_all().unwrap();
    let mut toucher = Toucher::start(PAGES, &file);
    let mut collector = Collector::load(&MemorySourceConfig::default(), "test-node".into(), &[]).expect("memory loads");
    let pid = toucher.child.id();

    let before = (collector.collect().unwrap(), toucher.proc_faults());
    assert_eq!(toucher.step(), "touched");
    let touched = (collector.collect().unwrap(), toucher.proc_faults());
    let ours = faults_of(&touched.0, pid, "minor") - faults_of(&before.0, pid, "minor");
    let kernel = touched.1 .0 - before.1 .0;
    eprintln!("touching {PAGES} pages: minor faults ours {ours}, /proc/{pid}/stat {kernel}");
    assert!(
        kernel >= PAGES as u64,
        "the kernel counted {kernel} minor faults for {PAGES} pages"
    );
    assert_eq!(ours, kernel, "minor faults: sonde and /proc/PID/stat");

    assert_eq!(toucher.step(), "read");
    let read = (collector.collect().unwrap(), toucher.proc_faults());
    let ours = faults_of(&read.0, pid, "major") - faults_of(&touched.0, pid, "major");
    let kernel = read.1 .1 - touched.1 .1;
    eprintln!("reading an uncached 8 MiB mapping: major faults ours {ours}, /proc/{pid}/stat {kernel}");
    assert!(kernel > 0, "the workload caused no major fault");
    assert_eq!(ours, kernel, "major faults: sonde and /proc/PID/stat");
}

/// A cgroup made for a test, in the memory hierarchy (and in the v2 one on
/// hybrid hosts, so the workload has a cgroup id of its own); removed on
/// drop.
struct TestCgroup {
    memory: PathBuf,
    unified: Option<PathBuf>,
    hierarchy: MemoryHierarchy,
}

impl TestCgroup {
    fn create(name: &str, limit: u64) -> TestCgroup {
        let hierarchy = MemoryHierarchy::find().expect("a memory cgroup hierarchy");
        let memory = hierarchy.root.join(name);
        std::fs::create_dir_all(&memory).unwrap();
        if hierarchy.version == "v1" {
            std::fs::write(memory.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        } else {
            std::fs::write(memory.join("memory.max"), limit.to_string()).unwrap();
            // No swap to escape to: the limit is the limit.
            let _ = std::fs::write(memory.join("memory.swap.max"), "0");
        }
        let unified = (hierarchy.version == "v1")
            .then(|| sonde_ebpf::cgroup::cgroup2_root().ok())
            .flatten()
            .map(|root| root.join(name));
        if let Some(dir) = &unified {
            std::fs::create_dir_all(dir).unwrap();
        }
        TestCgroup {
            memory,
            unified,
            hierarchy,
        }
    }

    /// A shell line that moves the shell into the cgroup(s).
    fn enter(&self) -> String {
        let mut line = format!("echo $$ > {}/cgroup.procs", self.memory.display());
        if let Some(dir) = &self.unified {
            line += &format!(" && echo $$ > {}/cgroup.procs", dir.display());
        }
        line
    }

    /// The v2 cgroup id of the workload (the inode of its v2 directory).
    fn cgroup_id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.unified.as_ref().unwrap_or(&self.memory))
            .unwrap()
            .ino()
    }

    /// The cgroup's own OOM-kill count (`memory.oom_control` in v1,
    /// `memory.events` in v2).
    fn oom_kills(&self) -> u64 {
        let file = if self.hierarchy.version == "v1" {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        counter(&std::fs::read_to_string(self.memory.join(file)).unwrap(), "oom_kill")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for dir in [Some(&self.memory), self.unified.as_ref()].into_iter().flatten() {
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `name value` lines (`/proc/vmstat`, `memory.events`): the value of `name`.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn vmstat_oom_kills() -> u64 {
    counter(&std::fs::read_to_string("/proc/vmstat").unwrap(), "oom_kill")
}

fn oom_logs(events: &[Event]) -> Vec<Log> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log(log) if log.name.as_str() == OOM_KILL => Some((**log).clone()),
            _ => None,
        })
        .collect()
}

/// A process allocating 128 MiB in a cgroup limited to 64 MiB is killed:
/// exactly one `memory.oom_kill` record names it, its score adjustment,
/// its cgroup and the cgroup's limit; the cgroup's own count and the
/// node's `oom_kill` both rose by one.
#[test]
fn an_oom_kill_names_the_victim_and_its_cgroup() {
    let test = "an_oom_kill_names_the_victim_and_its_cgroup";
    if !bpf_available_or_skip(test) {
        return;
    }
    const LIMIT: u64 = 64 << 20;
    let name = format!("sonde-oom-{}", std::process::id());
    let cgroup = TestCgroup::create(&name, LIMIT);
    let mut collector = Collector::load(&MemorySourceConfig::default(), "test-node".into(), &[]).expect("memory loads");
    let (node_before, cgroup_before) = (vmstat_oom_kills(), cgroup.oom_kills());
    let script = format!(
        "{} && echo 500 > /proc/$$/oom_score_adj && exec python3 -c 'x = b\"a\" * (128 << 20)'",
        cgroup.enter()
    );
    let mut child = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the workload was OOM-killed: {status:?}"
    );

    let mut logs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        logs.extend(oom_logs(&collector.collect().unwrap()));
        if !logs.is_empty() {
            // Anything else would arrive with it; one more look.
            std::thread::sleep(Duration::from_millis(300));
            logs.extend(oom_logs(&collector.collect().unwrap()));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ours: Vec<&Log> = logs
        .iter()
        .filter(|l| l.attributes.get(keys::PID) == Some(&Value::from(pid)))
        .collect();
    for log in &logs {
        eprintln!("{}", log.message.as_ref().map(|m| m.as_str()).unwrap_or(""));
    }
    assert_eq!(ours.len(), 1, "one OOM record for pid {pid}: {logs:#?}");
    let log = ours[0];
    let field = |name: &str| log.fields.get(name).cloned();
    assert_eq!(field(MEMCG_PATH), Some(Value::from(format!("/{name}"))));
    assert_eq!(field(MEMCG_LIMIT), Some(Value::from(LIMIT)));
    assert_eq!(field(MEMCG_CONTROLLER), Some(Value::from(cgroup.hierarchy.version)));
    let usage = match field(MEMCG_USAGE) {
        Some(Value::Int(usage)) => usage as u64,
        other => panic!("usage: {other:?}"),
    };
    assert!(
        (LIMIT / 2..=LIMIT).contains(&usage),
        "usage at the kill {usage} B, limit {LIMIT} B"
    );
    assert_eq!(
        log.attributes.get(keys::COMM).and_then(|v| v.as_str()),
        Some("python3"),
        "{log:?}"
    );
    if log.fields.get(SCORE_ADJ).is_some() {
        assert_eq!(field(SCORE_ADJ), Some(Value::Int(500)));
        assert_eq!(
            log.attributes.get(keys::CGROUP_ID),
            Some(&Value::from(cgroup.cgroup_id()))
        );
    }
    assert_eq!(cgroup.oom_kills() - cgroup_before, 1, "the cgroup's own oom_kill count");
    assert!(vmstat_oom_kills() > node_before, "/proc/vmstat oom_kill did not rise");
}

/// A cgroup limited to 32 MiB that reads a 96 MiB file through the page
/// cache stalls in memory-cgroup reclaim (of the clean pages it read
/// before): the stalls are attributed to its cgroup, and their total is
/// within the reader's wall time. (Reading, not writing: a v1 memory cgroup
/// full of dirty pages gets OOM-killed rather than throttled.)
#[test]
fn reclaim_stalls_are_attributed_to_the_cgroup_that_stalled() {
    let test = "reclaim_stalls_are_attributed_to_the_cgroup_that_stalled";
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let file = dir.path().join("data");
    std::fs::write(&file, vec![1u8; 96 << 20]).unwrap();
    std::fs::File::open(&file).unwrap().sync_all().unwrap();
    let name = format!("sonde-reclaim-{}", std::process::id());
    let cgroup = TestCgroup::create(&name, 32 << 20);
    let mut collector = Collector::load(&MemorySourceConfig::default(), "test-node".into(), &[]).expect("memory loads");
    // Its pages leave the page cache, so the reader charges them anew.
    let script = format!(
        "{} && dd if={} iflag=nocache count=0 status=none && exec dd if={} of=/dev/null bs=1M status=none",
        cgroup.enter(),
        file.display(),
        file.display()
    );
    let started = Instant::now();
    let status = Command::new("sh").args(["-c", &script]).status().unwrap();
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "the reader failed: {status:?}");
    let events = collector.collect().unwrap();
    let stalls: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m)
                if m.name.as_str() == RECLAIM_STALL
                    && m.attributes.get(RECLAIM_KIND).and_then(|v| v.as_str()) == Some("memcg")
                    && m.attributes.get(keys::CGROUP_ID) == Some(&Value::from(cgroup.cgroup_id())) =>
            {
                match &m.value {
                    MetricValue::Histogram(histogram) => Some((histogram.count, histogram.sum)),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect();
    eprintln!("memcg reclaim stalls of the reader's cgroup: {stalls:?} in {wall:.3} s");
    assert_eq!(stalls.len(), 1, "one histogram for the writer's cgroup");
    let (count, seconds) = stalls[0];
    assert!(count > 0, "no reclaim stall counted");
    assert!(seconds > 0.0 && seconds < wall, "stalled {seconds} s within {wall} s");
}
