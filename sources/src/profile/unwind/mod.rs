//! User space of the BPF stack walker (`bpf/unwind_walk.h`): compiles
//! each ELF file's `.eh_frame` (or `.debug_frame`) into a compact table
//! ([`compile`]), keeps one copy per file content across processes
//! (build id), loads it into the row pool in batches, evicting the least
//! recently used tables when the pool (`unwind_table_mib`) is full, and
//! publishes each process' mapping array.
//!
//! It runs on its own thread. A process' tables are loaded once the
//! program has sampled it `PROFILE_UNWIND_AFTER_SAMPLES` times (it
//! announces it again then): a build's thousands of short processes cost
//! nothing. Until its tables are in, a few milliseconds after that, a
//! process' samples are walked by frame pointers (`frame_pointers` in
//! [`completeness`]); symbolizing never waits for the loader.

pub mod compile;
pub mod completeness;

mod batch;
mod pool;
mod tables;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use metrics::Label;

use super::bpf::UnwindMaps;
use tables::Tables;

/// What the loader did so far (read by the metrics, tests and the bench).
#[derive(Debug, Default)]
pub struct UnwindStats {
    /// Processes whose mappings were published.
    pub processes: AtomicU64,
    /// Files compiled into a table (again after an eviction included).
    pub files_compiled: AtomicU64,
    /// Files without a usable table (no CFI, not x86-64, unreadable).
    pub files_without_table: AtomicU64,
    /// Tables written into the pool (reloads after eviction included).
    pub files_loaded: AtomicU64,
    /// Tables loaded now.
    pub tables: AtomicU64,
    /// Tables evicted to make room.
    pub evictions: AtomicU64,
    /// Tables that did not fit even after evicting every other.
    pub budget_full: AtomicU64,
    /// Map updates that failed.
    pub errors: AtomicU64,
    /// Bytes of the pool in use.
    pub used_bytes: AtomicU64,
    /// Bytes of the pool.
    pub capacity_bytes: AtomicU64,
    /// Time spent reading maps, compiling and loading, in nanoseconds.
    pub load_ns: AtomicU64,
}

enum Message {
    Note(Vec<u32>),
    Forget(Vec<u32>),
    Flush(mpsc::Sender<()>),
}

/// The loader thread's handle. Dropping it stops the thread.
pub struct Unwinder {
    tx: Option<mpsc::Sender<Message>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<UnwindStats>,
}

impl std::fmt::Debug for Unwinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unwinder")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Unwinder {
    /// Starts the loader thread, which owns `maps`; `labels` identify the
    /// component in its metrics.
    pub fn start(maps: UnwindMaps, procfs: PathBuf, labels: &[Label]) -> std::io::Result<Self> {
        let stats = Arc::new(UnwindStats::default());
        let (tx, rx) = mpsc::channel();
        let thread_stats = Arc::clone(&stats);
        let gauges = Gauges::new(labels);
        let thread = std::thread::Builder::new().name("sonde-unwind".into()).spawn(move || {
            let mut tables = Tables::new(maps, procfs, Arc::clone(&thread_stats));
            while let Ok(message) = rx.recv() {
                match message {
                    Message::Note(pids) => {
                        let compiled = thread_stats.files_compiled.load(Ordering::Relaxed);
                        pids.into_iter().for_each(|pid| tables.note(pid));
                        if thread_stats.files_compiled.load(Ordering::Relaxed) != compiled {
                            give_back_freed_memory();
                        }
                    }
                    Message::Forget(pids) => pids.into_iter().for_each(|pid| tables.forget(pid)),
                    Message::Flush(done) => {
                        let _ = done.send(());
                    }
                }
                gauges.update(&thread_stats);
            }
        })?;
        Ok(Unwinder {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Loads the tables of processes `pids` (in the background).
    pub fn note(&self, pids: &[u32]) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Note(pids.to_vec()));
        }
    }

    /// Forgets processes `pids` (exited).
    pub fn forget(&self, pids: &[u32]) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Message::Forget(pids.to_vec()));
        }
    }

    /// Waits until everything sent before is done (tests, the bench).
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if let Some(tx) = &self.tx {
            if tx.send(Message::Flush(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }

    /// What the loader did so far.
    pub fn stats(&self) -> &UnwindStats {
        &self.stats
    }
}

impl Drop for Unwinder {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The loader's metrics: gauges of the pool and counters of its events,
/// updated from [`UnwindStats`] after each message.
struct Gauges {
    used: metrics::Gauge,
    capacity: metrics::Gauge,
    tables: metrics::Gauge,
    evictions: metrics::Counter,
    full: metrics::Counter,
}

impl Gauges {
    fn new(labels: &[Label]) -> Self {
        Gauges {
            used: metrics::gauge!("sonde_profile_unwind_table_bytes", labels.to_vec()),
            capacity: metrics::gauge!("sonde_profile_unwind_table_capacity_bytes", labels.to_vec()),
            tables: metrics::gauge!("sonde_profile_unwind_tables", labels.to_vec()),
            evictions: metrics::counter!("sonde_profile_unwind_table_evictions_total", labels.to_vec()),
            full: metrics::counter!("sonde_profile_unwind_table_full_total", labels.to_vec()),
        }
    }

    fn update(&self, stats: &UnwindStats) {
        self.used.set(stats.used_bytes.load(Ordering::Relaxed) as f64);
        self.capacity.set(stats.capacity_bytes.load(Ordering::Relaxed) as f64);
        self.tables.set(stats.tables.load(Ordering::Relaxed) as f64);
        self.evictions.absolute(stats.evictions.load(Ordering::Relaxed));
        self.full.absolute(stats.budget_full.load(Ordering::Relaxed));
    }
}

/// Returns the heap's free memory to the kernel. Compiling a large table
/// takes and frees tens of MiB at once; glibc keeps freed blocks that large
/// in the thread's arena (its mmap threshold grows with the blocks freed),
/// so without this the agent's RSS stays at its peak.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
