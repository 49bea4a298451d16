//! `sonde top`'s kernel side: the run-time statistics of the agent's eBPF
//! programs and how full its hash maps are.
//!
//! The kernel counts program runs and run time only while statistics are
//! enabled. `sonde top` enables them with `BPF_ENABLE_STATS` (kernel 5.8),
//! which hands back a file descriptor: the statistics stay on while it is
//! open, and go back to what they were (off, unless the
//! `kernel.bpf_stats_enabled` sysctl or another tool holds them on) when it
//! closes — when top quits, or dies. Counting costs each program run two
//! clock reads, so they are on only while someone looks.
//!
//! The agent's programs and maps are the ones its file descriptors hold
//! (`/proc/PID/fdinfo`: `prog_id`, `map_id`).

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use aya::maps::{MapInfo, MapType};

/// Counting the entries of a hash map walks its keys: maps larger than
/// this are shown without a count.
const MAX_COUNTED_ENTRIES: u32 = 1 << 20;

/// Statistics kept on while this lives.
pub struct StatsEnabled {
    _fd: Option<OwnedFd>,
    /// Why statistics are off, if they are.
    pub unavailable: Option<String>,
}

impl StatsEnabled {
    /// Turns program statistics on (needs CAP_SYS_ADMIN and kernel 5.8).
    pub fn enable() -> Self {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => StatsEnabled {
                _fd: Some(fd),
                unavailable: None,
            },
            Err(error) => StatsEnabled {
                _fd: None,
                unavailable: Some(format!(
                    "program statistics unavailable ({error}); run top as root on kernel 5.8+"
                )),
            },
        }
    }
}

/// One program's counters at one time.
#[derive(Clone, Debug)]
struct ProgramSample {
    name: String,
    kind: String,
    runs: u64,
    run_time: Duration,
}

/// One line of the programs table.
#[derive(Clone, Debug, PartialEq)]
pub struct ProgramRow {
    /// Kernel id.
    pub id: u32,
    /// The component that loaded it (empty until the agent says).
    pub component: String,
    /// Name (the kernel keeps 15 characters).
    pub name: String,
    /// Type.
    pub kind: String,
    /// Runs a second.
    pub runs_per_second: Option<f64>,
    /// Nanoseconds per run over the last interval.
    pub ns_per_run: Option<f64>,
    /// Share of one CPU spent in it.
    pub cpu: Option<f64>,
    /// Runs in all (while statistics were on).
    pub runs: u64,
}

/// One line of the maps table.
#[derive(Clone, Debug, PartialEq)]
pub struct MapRow {
    /// Kernel id.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Type.
    pub kind: String,
    /// Entries now (hash maps only).
    pub entries: Option<u32>,
    /// Its size.
    pub max_entries: u32,
}

/// Follows the agent's programs between polls.
#[derive(Default)]
pub struct Programs {
    last: HashMap<u32, ProgramSample>,
    last_at: Option<Instant>,
}

/// The program and map ids that `pid`'s file descriptors hold.
fn ids_of(pid: u32) -> std::io::Result<(BTreeSet<u32>, BTreeSet<u32>)> {
    let mut programs = BTreeSet::new();
    let mut maps = BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))? {
        let Ok(text) = std::fs::read_to_string(entry?.path()) else {
            continue;
        };
        for line in text.lines() {
            let id = |prefix: &str| line.strip_prefix(prefix).and_then(|v| v.trim().parse::<u32>().ok());
            if let Some(id) = id("prog_id:") {
                programs.insert(id);
            } else if let Some(id) = id("map_id:") {
                maps.insert(id);
            }
        }
    }
    Ok((programs, maps))
}

impl Programs {
    /// The agent's programs and maps now, with rates since the last call.
    pub fn poll(&mut self, pid: u32, owners: &HashMap<u32, String>) -> Result<(Vec<ProgramRow>, Vec<MapRow>), String> {
        let (ids, map_ids) = ids_of(pid).map_err(|e| {
            format!("cannot read /proc/{pid}/fdinfo: {e} (run top as root, in the agent's pid namespace)")
        })?;
        let now = Instant::now();
        let seconds = self.last_at.map(|t| now.duration_since(t).as_secs_f64());
        let mut samples = HashMap::new();
        for info in aya::programs::loaded_programs().flatten() {
            if !ids.contains(&info.id()) {
                continue;
            }
            let kind = format!("{:?}", info.program_type());
            let kind = kind.strip_prefix("BPF_PROG_TYPE_").unwrap_or(&kind).to_lowercase();
            samples.insert(
                info.id(),
                ProgramSample {
                    name: info.name_as_str().unwrap_or("?").to_string(),
                    kind,
                    runs: info.run_count(),
                    run_time: info.run_time(),
                },
            );
        }
        let mut rows: Vec<ProgramRow> = samples
            .iter()
            .map(|(id, s)| {
                let before = self.last.get(id);
                let runs = before.map(|b| s.runs.saturating_sub(b.runs));
                let time = before.map(|b| s.run_time.saturating_sub(b.run_time));
                ProgramRow {
                    id: *id,
                    component: String::new(),
                    name: s.name.clone(),
                    kind: s.kind.clone(),
                    runs_per_second: runs.zip(seconds).map(|(r, t)| r as f64 / t),
                    ns_per_run: runs
                        .zip(time)
                        .filter(|(r, _)| *r > 0)
                        .map(|(r, t)| t.as_nanos() as f64 / r as f64),
                    cpu: time.zip(seconds).map(|(t, s)| t.as_secs_f64() / s),
                    runs: s.runs,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        // The component of each, from the agent's `sonde_ebpf_program_info`.
        for row in &mut rows {
            if let Some(component) = owners.get(&row.id) {
                row.component.clone_from(component);
            }
        }
        self.last = samples;
        self.last_at = Some(now);
        let mut maps: Vec<MapRow> = map_ids.into_iter().filter_map(map_row).collect();
        // The fullest first: what is about to drop events is on screen.
        let fill = |m: &MapRow| {
            m.entries
                .map_or(-1.0, |n| f64::from(n) / f64::from(m.max_entries.max(1)))
        };
        maps.sort_by(|a, b| fill(b).total_cmp(&fill(a)).then(a.name.cmp(&b.name)));
        Ok((rows, maps))
    }
}

fn map_row(id: u32) -> Option<MapRow> {
    let info = MapInfo::from_id(id).ok()?;
    let map_type = info.map_type().ok();
    let counted = matches!(
        map_type,
        Some(MapType::Hash | MapType::LruHash | MapType::PerCpuHash | MapType::LruPerCpuHash)
    );
    let entries = if counted && info.max_entries() <= MAX_COUNTED_ENTRIES {
        info.fd()
            .ok()
            .and_then(|fd| count_keys(fd.as_fd().as_raw_fd(), info.key_size(), info.max_entries()))
    } else {
        None
    };
    let kind = map_type.map(|t| format!("{t:?}")).unwrap_or_else(|| "?".into());
    Some(MapRow {
        id,
        name: info.name_as_str().unwrap_or("?").to_string(),
        kind,
        entries,
        max_entries: info.max_entries(),
    })
}

/// `union bpf_attr` for `BPF_MAP_GET_NEXT_KEY`.
#[repr(C)]
struct NextKeyAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    next_key: u64,
    flags: u64,
}

const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;

/// Counts a hash map's keys (aya's typed maps need the key type; this
/// needs only its size). Stops at `max` + 1, in case the map changes
/// under the walk.
#[allow(unsafe_code)]
fn count_keys(fd: i32, key_size: u32, max: u32) -> Option<u32> {
    let mut key = vec![0u8; key_size as usize];
    let mut next = vec![0u8; key_size as usize];
    let mut count = 0u32;
    let mut first = true;
    while count <= max {
        let attr = NextKeyAttr {
            map_fd: fd as u32,
            _pad: 0,
            key: if first { 0 } else { key.as_ptr() as u64 },
            next_key: next.as_mut_ptr() as u64,
            flags: 0,
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for this command; the
        // kernel reads `key_size` bytes at `key` (or none, for null) and
        // writes `key_size` bytes at `next_key`, both buffers that size.
        let result = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_GET_NEXT_KEY,
                &attr as *const NextKeyAttr,
                std::mem::size_of::<NextKeyAttr>(),
            )
        };
        if result != 0 {
            return (std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT)).then_some(count);
        }
        count += 1;
        first = false;
        std::mem::swap(&mut key, &mut next);
    }
    Some(count)
}
