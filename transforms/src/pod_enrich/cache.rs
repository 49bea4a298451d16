//! The process cache: pid → what /proc said about that process, bounded,
//! and checked against the process's start time so a reused pid is never
//! given a dead process's labels.
//!
//! An entry is the pair (pid, start time from `/proc/PID/stat`): a pid is
//! reused only after its process exits, and the new process has a later
//! start time. Events carry the pid but not the start time, so an entry
//! is re-checked (one read of `stat`) once per `recheck` interval while it
//! is used; a mismatch drops it and reads the new process. A pid would
//! have to wrap all of `pid_max` and land on the same number within one
//! interval to be mislabelled, and only for that interval.
//!
//! When full, entries are evicted in insertion order, skipping once those
//! used since they were last passed (the "second chance" clock): hot
//! processes stay, one-off short-lived ones go first.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pods::Attribute;
use super::procfs::{ProcReader, ProcessInfo};

/// What the cache holds about one process.
#[derive(Debug)]
pub struct Entry {
    /// Start time in clock ticks; `None` when the process was already gone
    /// when first seen (so we stop looking until the next recheck).
    pub start_time: Option<u64>,
    /// What /proc said.
    pub process: Option<Arc<ProcessInfo>>,
    /// The attributes to add, memoised with the pod index generation they
    /// were computed from.
    pub resolved: Option<(u64, Arc<[Attribute]>)>,
    checked: Instant,
    referenced: bool,
}

/// Counts since the last [`ProcessCache::take_counts`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Lookups answered from the cache (including after a successful recheck).
    pub hits: u64,
    /// Lookups that had to read /proc (new pid, or a reused one).
    pub misses: u64,
    /// Entries evicted to stay within the bound.
    pub evictions: u64,
    /// Entries dropped because their pid now belongs to another process.
    pub reused: u64,
}

/// Multiplicative hashing of a pid: pids are small dense integers, and
/// SipHash's DoS resistance buys nothing for keys the kernel chooses.
#[derive(Default)]
pub struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: spreads consecutive pids over the high bits
        // hashbrown uses for its control bytes.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PidMap<V> = HashMap<u32, V, BuildHasherDefault<PidHasher>>;

/// Bounded pid → [`Entry`] cache over a [`ProcReader`].
#[derive(Debug)]
pub struct ProcessCache {
    reader: ProcReader,
    entries: PidMap<Entry>,
    order: VecDeque<u32>,
    capacity: usize,
    recheck: Duration,
    counts: Counts,
}

impl ProcessCache {
    /// At most `capacity` processes, each re-checked every `recheck`.
    pub fn new(reader: ProcReader, capacity: usize, recheck: Duration) -> Self {
        let capacity = capacity.max(1);
        ProcessCache {
            reader,
            entries: PidMap::with_capacity_and_hasher(capacity.min(4096), Default::default()),
            order: VecDeque::with_capacity(capacity.min(4096)),
            capacity,
            recheck,
            counts: Counts::default(),
        }
    }

    /// Number of cached processes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns and resets the counts.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// The entry of `pid` as of `now` (the caller reads the clock once per
    /// batch: a clock read per event would cost more than the lookup).
    pub fn get(&mut self, pid: u32, now: Instant) -> &mut Entry {
        let fresh = match self.entries.get_mut(&pid) {
            Some(entry) if now.saturating_duration_since(entry.checked) < self.recheck => true,
            Some(entry) => match self.reader.stat(pid) {
                Ok(stat) if Some(stat.start_time) == entry.start_time => {
                    entry.checked = now;
                    true
                }
                // Exited since: keep its labels for the events still in
                // flight from it, and look again at the next recheck.
                Err(error) if error.is_gone() => {
                    entry.checked = now;
                    true
                }
                _ => {
                    if entry.start_time.is_some() {
                        self.counts.reused += 1;
                    }
                    false
                }
            },
            None => {
                if self.entries.len() >= self.capacity {
                    self.evict_one();
                }
                self.order.push_back(pid);
                false
            }
        };
        if fresh {
            self.counts.hits += 1;
        } else {
            self.counts.misses += 1;
            let process = self.reader.process(pid).ok();
            let entry = Entry {
                start_time: process.as_ref().map(|p| p.stat.start_time),
                process: process.map(Arc::new),
                resolved: None,
                checked: now,
                referenced: false,
            };
            self.entries.insert(pid, entry);
        }
        let entry = self.entries.get_mut(&pid).expect("present: found or inserted above");
        entry.referenced = true;
        entry
    }

    fn evict_one(&mut self) {
        // Each entry is passed over at most once, so this ends within
        // 2 × len steps.
        while let Some(pid) = self.order.pop_front() {
            match self.entries.get_mut(&pid) {
                Some(entry) if entry.referenced => {
                    entry.referenced = false;
                    self.order.push_back(pid);
                }
                Some(_) => {
                    self.entries.remove(&pid);
                    self.counts.evictions += 1;
                    return;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn fake_process(root: &Path, pid: u32, comm: &str, start: u64) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(&dir).unwrap();
        let rest = "S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0";
        fs::write(dir.join("stat"), format!("{pid} ({comm}) {rest} {start} 100 5\n")).unwrap();
        fs::write(dir.join("cgroup"), "0::/system.slice/x.service\n").unwrap();
    }

    fn comm(entry: &Entry) -> &str {
        &entry.process.as_ref().unwrap().stat.comm
    }

    #[test]
    fn a_reused_pid_is_noticed_at_the_recheck() {
        let dir = tempfile::tempdir().unwrap();
        fake_process(dir.path(), 7, "old", 100);
        let recheck = Duration::from_secs(1);
        let mut cache = ProcessCache::new(ProcReader::new(dir.path()), 10, recheck);
        let t0 = Instant::now();
        assert_eq!(comm(cache.get(7, t0)), "old");
        fake_process(dir.path(), 7, "new", 200);
        assert_eq!(comm(cache.get(7, t0)), "old", "within the interval: no read");
        assert_eq!(comm(cache.get(7, t0 + recheck)), "new");
        let counts = cache.take_counts();
        assert_eq!((counts.hits, counts.misses, counts.reused), (1, 2, 1));
    }

    #[test]
    fn exited_processes_keep_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        fake_process(dir.path(), 8, "gone", 100);
        let mut cache = ProcessCache::new(ProcReader::new(dir.path()), 10, Duration::ZERO);
        let t0 = Instant::now();
        cache.get(8, t0);
        fs::remove_dir_all(dir.path().join("8")).unwrap();
        assert_eq!(comm(cache.get(8, t0)), "gone");
        // Never seen alive: an empty entry, not a read per event.
        assert!(cache.get(9, t0).process.is_none());
        assert_eq!(cache.take_counts().misses, 2);
    }

    #[test]
    fn bounded_with_second_chance() {
        let dir = tempfile::tempdir().unwrap();
        for pid in 1..=4 {
            fake_process(dir.path(), pid, "p", 100);
        }
        let mut cache = ProcessCache::new(ProcReader::new(dir.path()), 3, Duration::from_secs(60));
        let t0 = Instant::now();
        for pid in 1..=3 {
            cache.get(pid, t0);
        }
        // All three were referenced once at insertion; the sweep clears
        // them and evicts the oldest.
        cache.get(4, t0);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.take_counts().evictions, 1);
        assert!(!cache.entries.contains_key(&1));
    }
}
