//! Addresses to frames, with blazesym: kernel addresses through kallsyms,
//! user addresses through the ELF file that holds them (symbol tables,
//! and DWARF line info where present), JIT code through perf maps.
//!
//! Everything resolved is cached, so a steady state costs hash lookups:
//! - frames per file content, keyed by the file's build id (the same
//!   library in many containers is resolved once), or by (device, inode)
//!   when it has none, then by file offset;
//! - each file is opened once, when a process mapping it is first read,
//!   and kept open: it can be read after the process exited or its
//!   container's mount namespace went away (blazesym reads it through
//!   `/proc/self/fd/N`);
//! - kernel frames by address.
//!
//! Files unused for [`FILE_IDLE_INTERVALS`] intervals are closed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use blazesym::symbolize::source::{Elf, Kernel, Source};
use blazesym::symbolize::{evict, Input, Symbolized, Symbolizer};
use blazesym::MaybeDefault;
use sonde_core::event::{Frame, FrameKind, SharedStr};

use super::debuginfo::{self, BinaryInfo, Debuginfod};
use super::perf_map::PerfMap;
use super::procs::{FileKey, MappingKind, Process};

/// Intervals a file may go unused before it is closed.
pub const FILE_IDLE_INTERVALS: u64 = 4;
/// Cached frames (kernel, or per file) past which that cache starts over:
/// bounds memory when a program's code is huge and its profile spread thin.
pub const MAX_CACHED_FRAMES: usize = 200_000;

/// The module of kernel frames.
pub const KERNEL_MODULE: &str = "[kernel]";
/// The module of JIT frames.
pub const JIT_MODULE: &str = "[jit]";

/// Why a user frame could not be named (label of the unknown-frames counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unresolved {
    /// The process exited before its mappings were read.
    ProcessExited,
    /// No mapping (or perf map entry) holds the address.
    NoMapping,
    /// The file has no symbol for the address (stripped), or could not be opened.
    NoSymbol,
}

impl Unresolved {
    /// The counter label.
    pub fn as_str(self) -> &'static str {
        match self {
            Unresolved::ProcessExited => "process_exited",
            Unresolved::NoMapping => "no_mapping",
            Unresolved::NoSymbol => "no_symbol",
        }
    }
}

/// A file's content, for caching: its build id, or where it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ContentKey {
    BuildId(Box<[u8]>),
    File(FileKey),
}

#[derive(Debug)]
struct OpenFile {
    // Held open so `fd_path` keeps naming this file.
    _file: File,
    fd_path: PathBuf,
    module: SharedStr,
    content: ContentKey,
    last_used: u64,
    /// Whether to read DWARF: off once it failed for this file.
    dwarf: bool,
    /// Its separate debug file, when one was found ([`debuginfo`]).
    debug: Option<DebugFile>,
}

/// A separate debug file, held open, and how to search it.
#[derive(Debug)]
struct DebugFile {
    _file: File,
    fd_path: PathBuf,
    /// The binary's segments: debug files are searched by virtual address.
    binary: BinaryInfo,
    /// Whether to read its DWARF: off once it failed.
    dwarf: bool,
}

/// The symbol caches of one source.
pub struct Symbols {
    symbolizer: Symbolizer,
    kernel: HashMap<u64, Frame>,
    files: HashMap<FileKey, OpenFile>,
    frames: HashMap<ContentKey, HashMap<u64, Frame>>,
    perf_maps: HashMap<u32, PerfMap>,
    perf_maps_read: HashSet<u32>,
    procfs: PathBuf,
    interval: u64,
    line_numbers: bool,
    debuginfod: Option<Debuginfod>,
}

impl std::fmt::Debug for Symbols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Symbols")
            .field("kernel", &self.kernel.len())
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl Symbols {
    /// Empty caches; `procfs` is `/proc`; `line_numbers` reads DWARF.
    pub fn new(procfs: &Path, line_numbers: bool) -> Self {
        Symbols {
            symbolizer: Symbolizer::builder()
                .enable_code_info(true)
                .enable_inlined_fns(false)
                .enable_demangling(true)
                .build(),
            kernel: HashMap::new(),
            files: HashMap::new(),
            frames: HashMap::new(),
            perf_maps: HashMap::new(),
            perf_maps_read: HashSet::new(),
            procfs: procfs.to_path_buf(),
            interval: 0,
            line_numbers,
            debuginfod: None,
        }
    }

    /// Also fetches debug files from a debuginfod server, for binaries
    /// with none installed.
    pub fn set_debuginfod(&mut self, debuginfod: Debuginfod) {
        self.debuginfod = Some(debuginfod);
    }

    /// Opens the files of `process`' mappings not open yet. Called while
    /// the process lives, so that its files stay readable after it exits.
    pub fn open_files(&mut self, process: &Process) {
        for mapping in &process.mappings {
            let MappingKind::File(key) = mapping.kind else { continue };
            if let Some(open) = self.files.get_mut(&key) {
                open.last_used = self.interval;
                continue;
            }
            let candidates = process.open_candidates(&self.procfs, mapping);
            let Some(file) = candidates.iter().find_map(|path| File::open(path).ok()) else {
                continue;
            };
            let fd_path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
            let info = BinaryInfo::read(&fd_path).unwrap_or_default();
            let content = match &info.build_id {
                Some(id) if !id.is_empty() => ContentKey::BuildId(id.clone().into_boxed_slice()),
                _ => ContentKey::File(key),
            };
            let root = self.procfs.join(process.pid.to_string()).join("root");
            let debug = debuginfo::find(&info, &mapping.path, &root, self.debuginfod.as_mut())
                .and_then(|path| File::open(path).ok())
                .map(|file| DebugFile {
                    fd_path: PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
                    _file: file,
                    binary: info,
                    dwarf: self.line_numbers,
                });
            self.files.insert(
                key,
                OpenFile {
                    _file: file,
                    fd_path,
                    module: mapping.path.clone(),
                    content,
                    last_used: self.interval,
                    dwarf: self.line_numbers,
                    debug,
                },
            );
        }
    }

    /// Resolves, in one batch per file, every user address of `process` in
    /// `addresses` (lookup addresses: a return address minus one) that is
    /// not cached yet.
    pub fn prefetch_user(&mut self, process: &Process, addresses: impl IntoIterator<Item = u64>) {
        let mut misses: HashMap<FileKey, Vec<u64>> = HashMap::new();
        for address in addresses {
            let Some(mapping) = process.mapping(address) else {
                continue;
            };
            let MappingKind::File(key) = mapping.kind else { continue };
            let Some(open) = self.files.get(&key) else { continue };
            let offset = mapping.file_offset(address);
            if !self.frames.get(&open.content).is_some_and(|f| f.contains_key(&offset)) {
                misses.entry(key).or_default().push(offset);
            }
        }
        for (key, mut offsets) in misses {
            offsets.sort_unstable();
            offsets.dedup();
            let Some(open) = self.files.get_mut(&key) else { continue };
            // The debug file first (full symbol table), the binary for what it leaves unnamed.
            let from_debug = match open.debug.as_mut() {
                Some(debug) => symbolize_debug(&self.symbolizer, debug, &offsets, &open.module),
                None => vec![None; offsets.len()],
            };
            let rest: Vec<u64> = offsets
                .iter()
                .zip(&from_debug)
                .filter(|(_, f)| f.is_none())
                .map(|(o, _)| *o)
                .collect();
            let mut from_binary = if rest.is_empty() {
                Vec::new()
            } else {
                symbolize_binary(&self.symbolizer, open, &rest)
            }
            .into_iter();
            let open = &self.files[&key];
            let cache = self.frames.entry(open.content.clone()).or_default();
            if cache.len() + offsets.len() > MAX_CACHED_FRAMES {
                cache.clear();
            }
            for (offset, frame) in offsets.iter().zip(from_debug) {
                let frame = frame.unwrap_or_else(|| match from_binary.next().flatten() {
                    Some(result) => to_frame(result, *offset, &open.module, FrameKind::Native),
                    None => unknown(*offset, &open.module),
                });
                cache.insert(*offset, frame);
            }
        }
    }

    /// The frame of user address `address` (a lookup address) of `process`.
    pub fn user_frame(&mut self, process: &Process, address: u64) -> Result<Frame, (Frame, Unresolved)> {
        let Some(mapping) = process.mapping(address) else {
            if let Some(frame) = self.jit_frame(process, address) {
                return Ok(frame);
            }
            let reason = if process.mappings.is_empty() {
                Unresolved::ProcessExited
            } else {
                Unresolved::NoMapping
            };
            return Err((unknown(address, &SharedStr::from_static("[unknown]")), reason));
        };
        match &mapping.kind {
            MappingKind::File(key) => {
                let offset = mapping.file_offset(address);
                let Some(open) = self.files.get_mut(key) else {
                    return Err((unknown(offset, &mapping.path), Unresolved::NoSymbol));
                };
                open.last_used = self.interval;
                match self.frames.get(&open.content).and_then(|f| f.get(&offset)) {
                    Some(frame) if frame.kind != FrameKind::Unknown => Ok(frame.clone()),
                    Some(frame) => Err((frame.clone(), Unresolved::NoSymbol)),
                    None => Err((unknown(offset, &mapping.path), Unresolved::NoSymbol)),
                }
            }
            MappingKind::Anon => self.jit_frame(process, address).ok_or_else(|| {
                (
                    unknown(address, &SharedStr::from_static(JIT_MODULE)),
                    Unresolved::NoSymbol,
                )
            }),
            MappingKind::Vdso | MappingKind::Special => Ok(Frame {
                function: mapping.path.clone(),
                module: Some(mapping.path.clone()),
                file: None,
                line: None,
                address: mapping.file_offset(address),
                kind: FrameKind::Native,
            }),
        }
    }

    /// The perf map symbol of `address`, reading the map at most once per interval.
    fn jit_frame(&mut self, process: &Process, address: u64) -> Option<Frame> {
        let map = self.perf_maps.entry(process.pid).or_default();
        if process.alive && self.perf_maps_read.insert(process.pid) {
            map.refresh(&PerfMap::path(&self.procfs, process.pid, process.ns_pid));
        }
        let name = map.lookup(address)?;
        Some(Frame {
            function: name.clone(),
            module: Some(SharedStr::from_static(JIT_MODULE)),
            file: None,
            line: None,
            address,
            kind: FrameKind::Jit,
        })
    }

    /// Resolves the kernel addresses in `addresses` not cached yet, in one batch.
    pub fn prefetch_kernel(&mut self, addresses: impl IntoIterator<Item = u64>) {
        let mut misses: Vec<u64> = addresses.into_iter().filter(|a| !self.kernel.contains_key(a)).collect();
        if misses.is_empty() {
            return;
        }
        misses.sort_unstable();
        misses.dedup();
        if self.kernel.len() + misses.len() > MAX_CACHED_FRAMES {
            self.kernel.clear();
        }
        // kallsyms only: a vmlinux image is rarely on a node and slow to search for.
        let kernel = Kernel {
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..Kernel::default()
        };
        let module = SharedStr::from_static(KERNEL_MODULE);
        match self
            .symbolizer
            .symbolize(&Source::Kernel(kernel), Input::AbsAddr(&misses))
        {
            Ok(results) => {
                for (address, result) in misses.iter().zip(results) {
                    self.kernel
                        .insert(*address, to_frame(result, *address, &module, FrameKind::Kernel));
                }
            }
            Err(error) => {
                tracing::debug!(%error, "cannot symbolize kernel addresses");
                for address in misses {
                    self.kernel.insert(address, unknown(address, &module));
                }
            }
        }
    }

    /// The frame of kernel address `address` (after [`Symbols::prefetch_kernel`]).
    pub fn kernel_frame(&self, address: u64) -> Frame {
        self.kernel
            .get(&address)
            .cloned()
            .unwrap_or_else(|| unknown(address, &SharedStr::from_static(KERNEL_MODULE)))
    }

    /// Forgets `pid`'s perf map (it exited and was evicted).
    pub fn forget_process(&mut self, pid: u32) {
        self.perf_maps.remove(&pid);
    }

    /// Ends an interval: closes files unused for [`FILE_IDLE_INTERVALS`],
    /// and drops the frames of contents no open file has.
    pub fn end_interval(&mut self) {
        self.interval += 1;
        self.perf_maps_read.clear();
        let interval = self.interval;
        let idle: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, f)| f.last_used + FILE_IDLE_INTERVALS < interval)
            .map(|(k, _)| *k)
            .collect();
        for key in idle {
            if let Some(open) = self.files.remove(&key) {
                let _ = self.symbolizer.evict(&evict::Elf::new(&open.fd_path).into());
            }
        }
        let live: HashSet<&ContentKey> = self.files.values().map(|f| &f.content).collect();
        self.frames.retain(|content, _| live.contains(content));
    }

    /// Number of files held open.
    pub fn open_file_count(&self) -> usize {
        self.files.len()
    }
}

/// Raises the soft limit of open files to the hard one: the caches keep a
/// file open per distinct binary and library on the node (and blazesym one
/// more while it reads it), past the usual soft limit of 1024 on a busy
/// node. Returns the new soft limit.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, owned `limit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit
        // up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return None;
        }
    }
    Some(limit.rlim_cur)
}

/// The frames the debug file names (by virtual address), `None` where it
/// names none.
fn symbolize_debug(
    symbolizer: &Symbolizer,
    debug: &mut DebugFile,
    offsets: &[u64],
    module: &SharedStr,
) -> Vec<Option<Frame>> {
    let addresses: Vec<(usize, u64)> = offsets
        .iter()
        .enumerate()
        .filter_map(|(i, o)| Some((i, debug.binary.virtual_address(*o)?)))
        .collect();
    let mut out = vec![None; offsets.len()];
    if addresses.is_empty() {
        return out;
    }
    let virt: Vec<u64> = addresses.iter().map(|(_, a)| *a).collect();
    let mut elf = Elf::new(&debug.fd_path);
    elf.debug_syms = debug.dwarf;
    let mut resolved = symbolizer.symbolize(&Source::Elf(elf.clone()), Input::VirtOffset(&virt));
    if resolved.is_err() && debug.dwarf {
        debug.dwarf = false;
        elf.debug_syms = false;
        resolved = symbolizer.symbolize(&Source::Elf(elf), Input::VirtOffset(&virt));
    }
    match resolved {
        Ok(results) => {
            for ((i, _), result) in addresses.iter().zip(results) {
                if matches!(result, Symbolized::Sym(_)) {
                    out[*i] = Some(to_frame(result, offsets[*i], module, FrameKind::Native));
                }
            }
        }
        Err(error) => tracing::debug!(file = %module, %error, "cannot symbolize with the debug file"),
    }
    out
}

/// The binary's own symbols for `offsets` (`None` each when it cannot be read).
fn symbolize_binary<'a>(
    symbolizer: &'a Symbolizer,
    open: &mut OpenFile,
    offsets: &[u64],
) -> Vec<Option<Symbolized<'a>>> {
    let mut elf = Elf::new(&open.fd_path);
    elf.debug_syms = open.dwarf;
    let mut resolved = symbolizer.symbolize(&Source::Elf(elf.clone()), Input::FileOffset(offsets));
    if resolved.is_err() && open.dwarf {
        // Debug info blazesym cannot read: the ELF symbols still name functions.
        open.dwarf = false;
        elf.debug_syms = false;
        resolved = symbolizer.symbolize(&Source::Elf(elf), Input::FileOffset(offsets));
    }
    match resolved {
        Ok(results) => results.into_iter().map(Some).collect(),
        Err(error) => {
            tracing::debug!(file = %open.module, %error, "cannot symbolize");
            vec![None; offsets.len()]
        }
    }
}

fn to_frame(result: Symbolized<'_>, address: u64, module: &SharedStr, kind: FrameKind) -> Frame {
    match result {
        Symbolized::Sym(sym) => {
            let code = sym.code_info.as_deref();
            Frame {
                function: SharedStr::from(sym.name.into_owned()),
                module: Some(
                    sym.module
                        .map(|m| SharedStr::from(m.to_string_lossy().into_owned()))
                        .filter(|_| kind == FrameKind::Kernel)
                        .unwrap_or_else(|| module.clone()),
                ),
                file: code.map(|c| SharedStr::from(c.to_path().to_string_lossy().into_owned())),
                line: code.and_then(|c| c.line),
                address,
                kind,
            }
        }
        Symbolized::Unknown(_) => unknown(address, module),
    }
}

/// A frame that could not be named: its address in hex.
pub fn unknown(address: u64, module: &SharedStr) -> Frame {
    Frame {
        function: SharedStr::from(format!("{address:#x}")),
        module: Some(module.clone()),
        file: None,
        line: None,
        address,
        kind: FrameKind::Unknown,
    }
}
