//! Loading an embedded object: [`Object::load`] prepares the system
//! ([`crate::system::prepare`]), relocates the object against the running
//! kernel's BTF (`/sys/kernel/btf/vmlinux`, kernel 5.4+), creates its maps;
//! then each program is loaded and attached by name, and maps are taken out
//! as typed handles, once. Every error names the object, program, map and
//! attach point.

use aya::maps::{Map, MapError};
use aya::programs::{ProgramError, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::error::LoadError;

/// Where the kernel exposes its own BTF.
pub const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The running kernel's BTF, parsed now. Parsed, it takes about four
/// times its file's size (some 20 MiB for a 5 MiB vmlinux BTF), so it is
/// not kept: hold it only for the check at hand, and never across
/// [`Object::load`], whose aya loader parses its own copy (see there).
pub fn kernel_btf() -> Result<Btf, LoadError> {
    Btf::from_sys_fs().map_err(|source| LoadError::KernelBtf {
        path: KERNEL_BTF,
        source: Box::new(source),
    })
}

/// A loaded eBPF object: its programs stay attached until it is dropped.
#[derive(Debug)]
pub struct Object {
    name: &'static str,
    ebpf: Ebpf,
}

impl Object {
    /// Loads `bytes` (one of [`crate::objects`]) as object `name`.
    /// `configure` may set globals or map sizes before the load.
    pub fn load<'a>(
        name: &'static str,
        bytes: &[u8],
        configure: impl FnOnce(&mut EbpfLoader<'a>),
    ) -> Result<Self, LoadError> {
        crate::system::prepare();
        // aya's loader parses the kernel's BTF itself (in `new`, whatever
        // is passed later), ignoring a failure: use that copy rather than
        // a second one, which would double the agent's peak memory, and
        // name a missing BTF here, where the error is clear.
        std::fs::metadata(KERNEL_BTF).map_err(|error| LoadError::KernelBtf {
            path: KERNEL_BTF,
            source: Box::new(aya::BtfError::FileError {
                path: KERNEL_BTF.into(),
                error,
            }),
        })?;
        let mut loader = EbpfLoader::new();
        configure(&mut loader);
        let ebpf = loader.load(bytes).map_err(|source| LoadError::Object {
            object: name,
            source: Box::new(source),
        })?;
        Ok(Object { name, ebpf })
    }

    /// The object's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The underlying aya object, for program types without a helper here.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Loads program `program` as a tracepoint program (unless it is
    /// already) and attaches it to `category:name` (kernel 4.7+).
    pub fn attach_tracepoint(&mut self, program: &'static str, category: &str, name: &str) -> Result<(), LoadError> {
        let object = self.name;
        let prog: &mut TracePoint = self.program_as(program)?;
        // A program may be attached to several tracepoints; load it once.
        if prog.fd().is_err() {
            prog.load().map_err(|e| load_error(object, program, e))?;
        }
        prog.attach(category, name).map_err(|source| LoadError::Attach {
            object,
            program,
            attach_point: format!("tracepoint {category}:{name}"),
            source: Box::new(source),
        })?;
        Ok(())
    }

    /// Program `program` as type `T` (not yet loaded).
    pub fn program_as<T>(&mut self, program: &'static str) -> Result<&mut T, LoadError>
    where
        for<'a> &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        let object = self.name;
        let prog = self
            .ebpf
            .program_mut(program)
            .ok_or(LoadError::NoSuchProgram { object, program })?;
        prog.try_into().map_err(|source| LoadError::Program {
            object,
            program,
            source: Box::new(source),
        })
    }

    /// Takes map `map` out of the object as the typed handle `T`.
    pub fn take_map<T>(&mut self, map: &'static str) -> Result<T, LoadError>
    where
        T: TryFrom<Map, Error = MapError>,
    {
        let object = self.name;
        let raw = self.ebpf.take_map(map).ok_or(LoadError::NoSuchMap { object, map })?;
        T::try_from(raw).map_err(|source| LoadError::Map {
            object,
            map,
            source: Box::new(source),
        })
    }

    /// Run-time statistics of every program (needs `kernel.bpf_stats_enabled`
    /// or [`aya::sys::enable_stats`], kernel 5.8+, to be non-zero).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.ebpf
            .programs()
            .filter_map(|(name, prog)| {
                let info = prog.info().ok()?;
                Some(ProgramStats {
                    name: name.to_string(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                    run_count: info.run_count(),
                })
            })
            .collect()
    }
}

impl Object {
    /// Kernel memory of the maps the object's loaded programs use, in bytes:
    /// the sum of each map's `memlock` in `/proc/self/fdinfo` (what the
    /// kernel charges for it, preallocated entries included). Maps that no
    /// program references and programs not loaded are not counted.
    pub fn map_memory_bytes(&self) -> u64 {
        self.map_memory().iter().map(|(_, bytes)| bytes).sum()
    }

    /// [`Object::map_memory_bytes`] per map: (the kernel's name of the map,
    /// 15 characters at most, bytes), largest first.
    pub fn map_memory(&self) -> Vec<(String, u64)> {
        let mut ids: Vec<u32> = self
            .ebpf
            .programs()
            .filter_map(|(_, prog)| prog.info().ok()?.map_ids().ok().flatten())
            .flatten()
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut maps: Vec<(String, u64)> = ids.into_iter().filter_map(map_memlock).collect();
        maps.sort_by_key(|m| std::cmp::Reverse(m.1));
        maps
    }
}

/// The name and `memlock` of map `id` (fdinfo, kernel 4.10+), through a
/// descriptor opened for the read.
fn map_memlock(id: u32) -> Option<(String, u64)> {
    use std::os::fd::{AsFd, AsRawFd};
    let map = aya::maps::MapInfo::from_id(id).ok()?;
    let fd = map.fd().ok()?;
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
    let bytes = info
        .lines()
        .find_map(|line| line.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())?;
    Some((map.name_as_str().unwrap_or("?").to_string(), bytes))
}

/// How long and how often a program ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramStats {
    /// The program's name in the object.
    pub name: String,
    /// Total time spent in the program, ns.
    pub run_time_ns: u64,
    /// Number of runs.
    pub run_count: u64,
}

/// A program load error, split into verifier rejections and the rest.
pub fn load_error(object: &'static str, program: &'static str, error: ProgramError) -> LoadError {
    match error {
        ProgramError::LoadError { io_error, verifier_log } => LoadError::Verifier {
            object,
            program,
            io_error: Box::new(io_error),
            verifier_log: verifier_log.to_string(),
        },
        source => LoadError::Program {
            object,
            program,
            source: Box::new(source),
        },
    }
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns()`, so that
/// user space can put its reads on the programs' time line.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
