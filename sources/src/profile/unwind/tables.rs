//! The tables loaded in the kernel: one per ELF file (deduplicated by
//! build id, else device and inode), rows in the shared pool, least
//! recently used evicted when a new one does not fit; and per process its
//! mapping array, pointing at them.
//!
//! Memory: a file's rows live in the kernel only. The agent keeps per file
//! its identity, segments and row count (a few dozen bytes), and compiles
//! the file again in the rare case its table was evicted and a process
//! needs it back: keeping every table's rows in the agent too cost it
//! 8 bytes a row (55 MiB on a machine running rustc, whose libraries have
//! a million rows each).
//!
//! CPU: loading is what costs (compiling, and writing the rows: about
//! 0.1 µs a row), so the loader avoids loading twice. A table larger than
//! [`LARGEST_SHARE`] of the pool is refused at once: loading it would evict
//! the tables of most running processes, which evict it again when they
//! are noted, each time a full compile and write. A table is never evicted
//! for another of the same process, and nothing is evicted for a table
//! that cannot fit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::profile::bpf::{
    UnwindFile, UnwindMapping, UnwindMappings, UnwindMaps, UnwindRow, UNWIND_MAX_FILES, UNWIND_MAX_MAPPINGS,
};
use crate::profile::procs::{read_maps, FileKey, Mapping, MappingKind};

use super::batch::update_array;
use super::compile::{compile, identify, Segment};
use super::pool::{Pool, Range};
use super::UnwindStats;

/// What identifies a file's content.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Identity {
    BuildId(Vec<u8>),
    Inode(FileKey),
    /// The vDSO: one image per kernel, the same in every process.
    Vdso,
}

/// The largest table loaded, as a share of the pool (1/N).
pub(super) const LARGEST_SHARE: u32 = 2;

/// One file known to the loader.
#[derive(Debug)]
struct FileEntry {
    /// Its index in `unwind_files` (1..UNWIND_MAX_FILES).
    id: u32,
    segments: Vec<Segment>,
    /// Rows of its table; 0 when it has none, or one too large to load.
    rows: u32,
    /// Where its rows are in the pool, while loaded.
    loaded: Option<Range>,
    last_used: u64,
    /// Processes whose mappings point at it.
    users: u32,
}

/// The loader's state (owned by its thread).
pub(super) struct Tables {
    maps: UnwindMaps,
    pool: Pool,
    procfs: PathBuf,
    by_inode: HashMap<FileKey, Identity>,
    files: HashMap<Identity, FileEntry>,
    free_ids: Vec<u32>,
    /// Per process: the identities of the files its mappings use.
    pids: HashMap<u32, Vec<Identity>>,
    clock: u64,
    stats: Arc<UnwindStats>,
}

impl Tables {
    pub(super) fn new(maps: UnwindMaps, procfs: PathBuf, stats: Arc<UnwindStats>) -> Self {
        let pool = Pool::new(maps.capacity);
        stats.capacity_bytes.store(
            u64::from(maps.capacity) * std::mem::size_of::<UnwindRow>() as u64,
            Ordering::Relaxed,
        );
        Tables {
            maps,
            pool,
            procfs,
            by_inode: HashMap::new(),
            files: HashMap::new(),
            free_ids: (1..UNWIND_MAX_FILES).rev().collect(),
            pids: HashMap::new(),
            clock: 0,
            stats,
        }
    }

    /// Reads process `pid`'s mappings, loads the tables of its files and
    /// publishes its mapping array. A process that is gone is forgotten.
    pub(super) fn note(&mut self, pid: u32) {
        let started = Instant::now();
        self.clock += 1;
        let Some(mappings) = read_maps(&self.procfs, pid) else {
            self.forget(pid);
            return;
        };
        let mut array = UnwindMappings::default();
        let mut used = Vec::new();
        let mut count = 0;
        // In address order (the walker's binary search); past
        // UNWIND_MAX_MAPPINGS the highest mappings are left out.
        for mapping in mappings.iter().take(UNWIND_MAX_MAPPINGS as usize) {
            let (file, bias) = match &mapping.kind {
                MappingKind::File(key) => match self.file_for(pid, mapping, Some(*key)) {
                    Some((identity, id, bias)) => {
                        used.push(identity);
                        (id, bias)
                    }
                    None => (0, 0),
                },
                MappingKind::Vdso => match self.file_for(pid, mapping, None) {
                    Some((identity, id, bias)) => {
                        used.push(identity);
                        (id, bias)
                    }
                    None => (0, 0),
                },
                _ => (0, 0),
            };
            array.mappings[count] = UnwindMapping {
                start: mapping.start,
                end: mapping.end,
                bias,
                file,
                pad: 0,
            };
            count += 1;
        }
        array.count = count as u32;
        for identity in &used {
            if let Some(entry) = self.files.get_mut(identity) {
                entry.users += 1;
            }
        }
        if let Some(old) = self.pids.insert(pid, used) {
            self.release_users(&old);
        }
        if let Err(error) = self.maps.pids.insert(pid, array, 0) {
            tracing::debug!(%error, pid, "cannot publish the process' unwind mappings");
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.processes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .load_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        self.publish_usage();
    }

    /// Forgets process `pid` (exited).
    pub(super) fn forget(&mut self, pid: u32) {
        if let Some(old) = self.pids.remove(&pid) {
            self.release_users(&old);
            let _ = self.maps.pids.remove(&pid);
        }
    }

    fn release_users(&mut self, identities: &[Identity]) {
        for identity in identities {
            if let Some(entry) = self.files.get_mut(identity) {
                entry.users = entry.users.saturating_sub(1);
            }
        }
    }

    /// The table of `mapping`'s file, loaded: its identity, id and the
    /// mapping's load bias. `None` when the file has no usable table.
    /// `key` is `None` for the vDSO.
    fn file_for(&mut self, pid: u32, mapping: &Mapping, key: Option<FileKey>) -> Option<(Identity, u32, u64)> {
        // Rows compiled just now, for a file not seen before.
        let mut fresh = None;
        let identity = match key {
            None => {
                if !self.files.contains_key(&Identity::Vdso) {
                    let image = own_vdso()?;
                    fresh = Some(self.add_file(Identity::Vdso, &image)?);
                }
                Identity::Vdso
            }
            Some(key) => match self.by_inode.get(&key) {
                Some(identity) => identity.clone(),
                None => {
                    let (identity, rows) = self.read_file(pid, mapping, key)?;
                    self.by_inode.insert(key, identity.clone());
                    fresh = rows;
                    identity
                }
            },
        };
        let clock = self.clock;
        let entry = self.files.get_mut(&identity)?;
        entry.last_used = clock;
        let id = entry.id;
        let bias = bias(&entry.segments, mapping)?;
        if entry.rows == 0 {
            return None;
        }
        if entry.loaded.is_none() {
            // Evicted since (or compiled for another file of the same
            // build id): compiled again from this process' copy.
            let rows = match fresh {
                Some(rows) => rows,
                None => self.recompile(pid, mapping, &identity)?,
            };
            self.load(&identity, &rows)?;
        }
        Some((identity, id, bias))
    }

    /// Opens and compiles the file of `mapping` unless a file of the same
    /// build id is known: its identity, and its rows when compiled now.
    /// `None` when it cannot be opened or parsed.
    fn read_file(&mut self, pid: u32, mapping: &Mapping, key: FileKey) -> Option<(Identity, Option<Vec<UnwindRow>>)> {
        let file = open(&self.procfs, pid, mapping)?;
        // SAFETY: the file is mapped read-only; a concurrent truncation
        // could fault, which ELF files that processes map do not see.
        let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        let (build_id, _) = identify(&data).ok()?;
        let identity = match build_id {
            Some(id) if !id.is_empty() => Identity::BuildId(id),
            _ => Identity::Inode(key),
        };
        let mut rows = None;
        if !self.files.contains_key(&identity) {
            tracing::debug!(path = %mapping.path, "compiling an unwind table");
            rows = Some(self.add_file(identity.clone(), &data)?);
        }
        Some((identity, rows))
    }

    /// The rows of a known file again (its table was evicted).
    fn recompile(&mut self, pid: u32, mapping: &Mapping, identity: &Identity) -> Option<Vec<UnwindRow>> {
        let compiled = match identity {
            Identity::Vdso => compile(&own_vdso()?),
            _ => {
                let file = open(&self.procfs, pid, mapping)?;
                // SAFETY: as in `read_file`.
                let data = unsafe { memmap2::Mmap::map(&file) }.ok()?;
                compile(&data)
            }
        };
        self.stats.files_compiled.fetch_add(1, Ordering::Relaxed);
        compiled.ok().map(|table| table.rows)
    }

    /// Registers ELF image `data` as the file of `identity` and compiles its
    /// table: its rows (empty when it has none, or too many to load).
    fn add_file(&mut self, identity: Identity, data: &[u8]) -> Option<Vec<UnwindRow>> {
        let segments = identify(data).ok()?.1;
        let id = self.free_id()?;
        let rows = match compile(data) {
            Ok(table) => {
                self.stats.files_compiled.fetch_add(1, Ordering::Relaxed);
                table.rows
            }
            Err(error) => {
                tracing::debug!(%error, ?identity, "no unwind table");
                self.stats.files_without_table.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            }
        };
        let rows = if rows.len() as u64 > u64::from(self.largest()) {
            tracing::debug!(?identity, rows = rows.len(), "unwind table too large for the pool");
            self.stats.budget_full.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        } else {
            rows
        };
        self.files.insert(
            identity,
            FileEntry {
                id,
                segments,
                rows: rows.len() as u32,
                loaded: None,
                last_used: self.clock,
                users: 0,
            },
        );
        Some(rows)
    }

    /// Rows of the largest table loaded.
    fn largest(&self) -> u32 {
        (self.maps.capacity / LARGEST_SHARE).max(1)
    }

    /// A free file id; when all are taken, those of files that no live
    /// process maps and that are not loaded are given back first.
    fn free_id(&mut self) -> Option<u32> {
        if self.free_ids.is_empty() {
            let unused: Vec<Identity> = self
                .files
                .iter()
                .filter(|(_, e)| e.users == 0 && e.loaded.is_none())
                .map(|(identity, _)| identity.clone())
                .collect();
            for identity in &unused {
                if let Some(entry) = self.files.remove(identity) {
                    self.free_ids.push(entry.id);
                }
            }
            self.by_inode.retain(|_, identity| !unused.contains(identity));
        }
        self.free_ids.pop()
    }

    /// Puts `rows`, the table of `identity`, in the pool (evicting the
    /// least recently used tables if needed) and publishes them.
    fn load(&mut self, identity: &Identity, rows: &[UnwindRow]) -> Option<()> {
        let count = rows.len() as u32;
        let range = loop {
            if let Some(range) = self.pool.allocate(count) {
                break range;
            }
            if !self.evict_one(identity) {
                self.stats.budget_full.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let entry = self.files.get_mut(identity)?;
        if let Err(error) = update_array(&self.maps.rows, range.first, rows) {
            tracing::debug!(%error, "cannot write unwind rows");
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            self.pool.release(range);
            return None;
        }
        let file = UnwindFile {
            first: range.first,
            count,
        };
        if let Err(error) = self.maps.files.set(entry.id, file, 0) {
            tracing::debug!(%error, "cannot publish an unwind table");
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            self.pool.release(range);
            return None;
        }
        entry.loaded = Some(range);
        self.stats.files_loaded.fetch_add(1, Ordering::Relaxed);
        Some(())
    }

    /// Evicts the loaded table used least recently (those of no live
    /// process first), except `keep` and the tables of the process being
    /// noted (used at this clock): evicting those would leave it with
    /// holes. False when there is none.
    fn evict_one(&mut self, keep: &Identity) -> bool {
        let clock = self.clock;
        let victim = self
            .files
            .iter()
            .filter(|(identity, entry)| entry.loaded.is_some() && *identity != keep && entry.last_used != clock)
            .min_by_key(|(_, entry)| (entry.users > 0, entry.last_used))
            .map(|(identity, _)| identity.clone());
        let Some(victim) = victim else { return false };
        let Some(entry) = self.files.get_mut(&victim) else {
            return false;
        };
        // Unpublish before the rows are reused: a walk in flight reads count 0.
        let _ = self.maps.files.set(entry.id, UnwindFile::default(), 0);
        if let Some(range) = entry.loaded.take() {
            self.pool.release(range);
        }
        self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn publish_usage(&self) {
        let bytes = u64::from(self.pool.used()) * std::mem::size_of::<UnwindRow>() as u64;
        self.stats.used_bytes.store(bytes, Ordering::Relaxed);
        let loaded = self.files.values().filter(|f| f.loaded.is_some()).count();
        self.stats.tables.store(loaded as u64, Ordering::Relaxed);
    }
}

/// The load bias of `mapping`: its start minus the ELF address of its
/// first byte, from the code segment holding its file offset. A segment
/// need not start on a page: the mapping starts at the page below it.
fn bias(segments: &[Segment], mapping: &Mapping) -> Option<u64> {
    const PAGE: u64 = 4096;
    let holds = |s: &&Segment| s.offset & !(PAGE - 1) <= mapping.offset && mapping.offset < s.offset + s.size.max(1);
    let segment = segments
        .iter()
        .filter(|s| s.executable)
        .find(holds)
        .or_else(|| segments.iter().find(holds))?;
    let vaddr = segment.vaddr.wrapping_add(mapping.offset).wrapping_sub(segment.offset);
    Some(mapping.start.wrapping_sub(vaddr))
}

/// A copy of this process' vDSO image: the kernel maps the same one into
/// every process.
fn own_vdso() -> Option<Vec<u8>> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let vdso = crate::profile::procs::parse_maps(&maps)
        .into_iter()
        .find(|m| m.kind == MappingKind::Vdso)?;
    let len = usize::try_from(vdso.end - vdso.start).ok()?;
    // SAFETY: the kernel maps the vDSO readable for the process' whole
    // life, at the range /proc/self/maps gives; it is only read here.
    let image = unsafe { std::slice::from_raw_parts(vdso.start as *const u8, len) };
    Some(image.to_vec())
}

/// Opens the file of `mapping` as process `pid` sees it.
fn open(procfs: &Path, pid: u32, mapping: &Mapping) -> Option<std::fs::File> {
    let dir = procfs.join(pid.to_string());
    let candidates = [
        dir.join(format!("map_files/{:x}-{:x}", mapping.start, mapping.end)),
        dir.join("root").join(mapping.path.trim_start_matches('/')),
    ];
    candidates.iter().find_map(|path| std::fs::File::open(path).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_core::event::SharedStr;

    #[test]
    fn bias_comes_from_the_segment_holding_the_offset() {
        let segments = [
            Segment {
                offset: 0,
                vaddr: 0,
                size: 0x1800,
                executable: false,
            },
            Segment {
                offset: 0x1000,
                vaddr: 0x401000,
                size: 0x5000,
                executable: true,
            },
        ];
        let mapping = Mapping {
            start: 0x7f00_0000_1000,
            end: 0x7f00_0000_6000,
            offset: 0x1000,
            path: SharedStr::from("/x".to_string()),
            kind: MappingKind::Anon,
        };
        assert_eq!(bias(&segments, &mapping), Some(0x7f00_0000_1000 - 0x401000));
        let outside = Mapping {
            offset: 0x9000,
            ..mapping.clone()
        };
        assert_eq!(bias(&segments, &outside), None);
        // A code segment off a page boundary (rustc's binaries): the
        // mapping starts at the page below, inside the first segment too.
        let rust = [
            Segment {
                offset: 0,
                vaddr: 0,
                size: 0x17154,
                executable: false,
            },
            Segment {
                offset: 0x17160,
                vaddr: 0x18160,
                size: 0x41700,
                executable: true,
            },
        ];
        let text = Mapping {
            start: 0x5619_8f33_4000,
            end: 0x5619_8f37_6000,
            offset: 0x17000,
            ..mapping
        };
        assert_eq!(bias(&rust, &text), Some(0x5619_8f33_4000 - 0x18000));
    }
}
