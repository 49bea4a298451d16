//! The `protocols` programs (`protocols.bpf.c`): the bytes of requests
//! and responses from the syscalls that move socket data, and plaintext
//! from TLS libraries, in a ring buffer ([`Records`]).
//!
//! Tracepoints `syscalls:sys_{enter,exit}_*` (needs
//! `CONFIG_FTRACE_SYSCALLS`) and `sched:sched_process_exit`; uprobes on
//! `SSL_read`/`SSL_write` and their `_ex` variants, attached per library
//! file by [`ProtocolPrograms::attach_tls`]; uprobes at the entry and at
//! each return instruction of Go's `crypto/tls.(*Conn).Read`/`Write`,
//! attached per executable by [`ProtocolPrograms::attach_go_tls`]. Every
//! object has them all. Minimum kernel 5.8 (ring buffers, CO-RE reads of
//! the fd table).

mod abi;
mod options;
mod records;

pub use abi::*;
pub use options::Options;
pub use records::{Record, Records};

use std::path::Path;

use sonde_ebpf::aya::programs::uprobe::UProbeAttachLocation;

use sonde_ebpf::aya::maps::{HashMap, MapData};
use sonde_ebpf::aya::programs::uprobe::UProbeScope;
use sonde_ebpf::aya::programs::UProbe;
use sonde_ebpf::loader::{Object, ProgramStats};
use sonde_ebpf::telemetry::{KernelStat, StatTotals, StatsArray};
use sonde_ebpf::{LoadError, ReadError};

/// The compiled object, embedded: the per-thread call stash in an LRU
/// hash, the fd table read with probe reads (kernel 5.8+).
static ELF: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/protocols.bpf.o"));
/// The same programs and maps for kernels with task storage (5.11+): the
/// stash in task storage, the fd table walked with plain BTF loads.
/// Cheaper per call; loaded where the kernel has it.
static ELF_TASK: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/protocols_task.bpf.o"));

/// The same records from exit programs alone (kernel 5.15+,
/// `bpf_task_pt_regs`): each call's arguments read from the task's entry
/// registers at its return. One program run per data call instead of two;
/// loaded where the kernel has the helper.
static ELF_ARGS: &[u8] = sonde_ebpf::aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/protocols_args.bpf.o"));

/// Set (to anything) to load the 5.8 object even where task storage is
/// available (tests run both objects on one kernel).
pub const NO_TASK_STORAGE_ENV: &str = "SONDE_PROTOCOLS_NO_TASK_STORAGE";
/// Set (to anything) to load an object with entry programs even where the
/// exit-only one would load.
pub const ENTRY_PROGRAMS_ENV: &str = "SONDE_PROTOCOLS_ENTRY_PROGRAMS";

/// Which object is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// Exit programs only, arguments from the entry registers (5.15+).
    ArgsAtExit,
    /// Entry and exit programs, the stash in task storage (5.11+).
    TaskStorage,
    /// Entry and exit programs, the stash in an LRU hash (5.8+).
    Hash,
}

impl ObjectKind {
    fn elf(self) -> &'static [u8] {
        match self {
            ObjectKind::ArgsAtExit => ELF_ARGS,
            ObjectKind::TaskStorage => ELF_TASK,
            ObjectKind::Hash => ELF,
        }
    }

    /// The objects to try, best first.
    fn candidates() -> Vec<ObjectKind> {
        let mut kinds = Vec::new();
        if std::env::var_os(ENTRY_PROGRAMS_ENV).is_none()
            && std::env::var_os(NO_TASK_STORAGE_ENV).is_none()
            && sonde_ebpf::args_at_exit()
        {
            kinds.push(ObjectKind::ArgsAtExit);
        }
        if task_storage_wanted() {
            kinds.push(ObjectKind::TaskStorage);
        }
        kinds.push(ObjectKind::Hash);
        kinds
    }
}

/// Whether the 5.11+ object may be tried: kernel 5.11 or later, task
/// storage maps can be made, and not turned off by [`NO_TASK_STORAGE_ENV`].
fn task_storage_wanted() -> bool {
    use sonde_ebpf::aya::util::KernelVersion;
    if std::env::var_os(NO_TASK_STORAGE_ENV).is_some() {
        return false;
    }
    let recent = KernelVersion::current().is_ok_and(|v| v >= KernelVersion::new(5, 11, 0));
    recent
        && matches!(
            sonde_ebpf::aya::sys::is_map_supported(sonde_ebpf::aya::maps::MapType::TaskStorage),
            Ok(true)
        )
}

/// The object's name, used in errors.
pub const OBJECT: &str = "protocols";
/// Connections of traced processes (LRU).
pub const MAP_CONNS: &str = "proto_conns";
/// The records (ring buffer).
pub const MAP_EVENTS: &str = "proto_events";
/// Per-CPU counters of what the programs lost (`PROTO_STAT_*`).
pub const MAP_STATS: &str = "proto_stats";

/// The extra stats slots [`ProtocolPrograms::stats`] appends: connections
/// in the map now, and those user space removed (of exited processes).
pub const PROTO_LIVE_CONNS: u32 = PROTO_STAT_COUNT;
/// See [`PROTO_LIVE_CONNS`].
pub const PROTO_FORGOTTEN_CONNS: u32 = PROTO_STAT_COUNT + 1;

/// How the programs' stats slots are exported.
pub const STATS: &[KernelStat] = &[
    KernelStat::lost(PROTO_STAT_RINGBUF_FULL, "ringbuf_full"),
    KernelStat::map_full(PROTO_STAT_CONNS_FULL, MAP_CONNS),
    KernelStat::failed_read(PROTO_STAT_READ_FAILED, "user:buffer"),
    // TLS library calls whose socket could not be found (no syscall in
    // the call and none before on that SSL*).
    KernelStat::lost(PROTO_STAT_TLS_UNMAPPED, "tls_unmapped"),
    // Calls with more iovecs or messages than are copied: their tail is a gap.
    KernelStat::lost(PROTO_STAT_IOV_TRUNCATED, "iov_truncated"),
    KernelStat::evictions(
        PROTO_STAT_CONN_INSERTS,
        &[PROTO_STAT_CONN_DELETES, PROTO_LIVE_CONNS, PROTO_FORGOTTEN_CONNS],
        MAP_CONNS,
    ),
];

/// The TLS library functions probed, and the programs for their entry
/// and return.
const TLS_PROBES: &[(&str, &str, &str)] = &[
    ("SSL_read", "ssl_read_enter", "ssl_read_exit"),
    ("SSL_write", "ssl_write_enter", "ssl_write_exit"),
    ("SSL_read_ex", "ssl_read_ex_enter", "ssl_read_ex_exit"),
    ("SSL_write_ex", "ssl_write_ex_enter", "ssl_write_ex_exit"),
];

/// Go's `crypto/tls` programs: (entry, return) of Read, then of Write
/// (whose bytes are sent at its entry: no return program).
const GO_TLS_PROGRAMS: [(&str, &str); 2] = [("go_tls_read_enter", "go_tls_read_return"), ("go_tls_write_enter", "")];

/// Go processes → their `tls.Conn` offsets.
pub const MAP_GO_OFFSETS: &str = "proto_go_offsets";

/// Data syscalls with an enter and an exit program each (`enter_NAME`,
/// `exit_NAME`), and the lifecycle ones.
const SYSCALLS: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "recvmmsg",
    "sendmmsg",
    "sendfile64",
    "connect",
    "accept",
    "accept4",
];

/// The loaded and attached programs, with typed handles to their maps.
/// Dropping it detaches everything.
pub struct ProtocolPrograms {
    object: Object,
    conns: HashMap<MapData, ConnKey, [u8; CONN_VALUE_SIZE]>,
    go_offsets: HashMap<MapData, u32, ProtoGoOffsets>,
    stats: StatsArray,
    records: Option<Records>,
    forgotten: u64,
    kind: ObjectKind,
    _filters: options::Filters,
}

impl std::fmt::Debug for ProtocolPrograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtocolPrograms")
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

impl ProtocolPrograms {
    /// Loads the programs and attaches the tracepoints. TLS libraries are
    /// attached one by one with [`ProtocolPrograms::attach_tls`].
    pub fn load(options: &Options) -> Result<Self, LoadError> {
        let candidates = ObjectKind::candidates();
        let (last, better) = candidates.split_last().expect("the 5.8 object is always a candidate");
        for kind in better {
            match Self::load_object(*kind, options) {
                Ok(programs) => {
                    tracing::debug!(?kind, "protocols: programs loaded");
                    return Ok(programs);
                }
                // Task storage in tracing programs came after the map
                // (5.11/5.12): an older object still works.
                Err(error) => tracing::info!(%error, ?kind, "protocols: programs refused, trying an older object"),
            }
        }
        Self::load_object(*last, options)
    }

    /// Which object was loaded.
    pub fn object_kind(&self) -> ObjectKind {
        self.kind
    }

    fn load_object(kind: ObjectKind, options: &Options) -> Result<Self, LoadError> {
        let elf = kind.elf();
        let cpus = sonde_ebpf::aya::util::nr_cpus().map_or(1, |n| n as u32).max(1);
        let settings = options.kernel_settings();
        let mut object = Object::load(OBJECT, elf, |loader| {
            // aya makes the task-storage map but has no type for it.
            loader.allow_unsupported_maps();
            loader.override_global("capture_bytes", &settings.capture_bytes, true);
            loader.override_global("protocols", &settings.protocols, true);
            loader.override_global("self_tgid", &settings.self_tgid, true);
            loader.override_global("filter_ports", &settings.filter_ports, true);
            loader.override_global("filter_comm", &settings.filter_comm, true);
            loader.override_global("wakeup_bytes", &settings.wakeup_bytes, true);
            loader.override_global("dns_ports", &settings.dns_ports, true);
            loader.map_max_entries(MAP_CONNS, options.max_connections.max(1));
            loader.map_max_entries("proto_scratch", cpus);
            loader.map_max_entries(MAP_EVENTS, settings.ring_bytes);
        })?;
        let filters = options.fill_filters(&mut object)?;
        for name in SYSCALLS {
            attach_syscall(&mut object, name, kind == ObjectKind::ArgsAtExit)?;
        }
        object.attach_tracepoint("enter_close", "syscalls", "sys_enter_close")?;
        object.attach_tracepoint("process_exit", "sched", "sched_process_exit")?;
        let go = GO_TLS_PROGRAMS
            .iter()
            .flat_map(|(enter, ret)| [*enter, *ret])
            .filter(|p| !p.is_empty());
        for program in TLS_PROBES.iter().flat_map(|(_, enter, exit)| [*enter, *exit]).chain(go) {
            let prog: &mut UProbe = object.program_as(program)?;
            prog.load()
                .map_err(|e| sonde_ebpf::loader::load_error(OBJECT, program, e))?;
        }
        Ok(ProtocolPrograms {
            conns: object.take_map(MAP_CONNS)?,
            go_offsets: object.take_map(MAP_GO_OFFSETS)?,
            stats: StatsArray::take(&mut object, MAP_STATS, PROTO_STAT_COUNT)?,
            records: Some(Records::new(object.take_map(MAP_EVENTS)?)),
            forgotten: 0,
            kind,
            _filters: filters,
            object,
        })
    }

    /// The ring buffer of records (once; `None` afterwards).
    pub fn take_records(&mut self) -> Option<Records> {
        self.records.take()
    }

    /// Attaches the TLS probes to every process that maps `library` (a
    /// path as this process sees it, e.g. `/proc/PID/root/usr/lib/…`).
    /// Returns how many of the functions it has (a library or executable
    /// without any of them is an error).
    pub fn attach_tls(&mut self, library: &Path) -> Result<usize, LoadError> {
        let mut attached = 0;
        let mut last_error = None;
        for (function, enter, exit) in TLS_PROBES {
            for (program, point) in [(*enter, "uprobe"), (*exit, "uretprobe")] {
                let prog: &mut UProbe = self.object.program_as(program)?;
                match prog.attach(*function, library, UProbeScope::AllProcesses) {
                    Ok(_) => attached += usize::from(point == "uprobe"),
                    Err(source) => {
                        last_error = Some(LoadError::Attach {
                            object: OBJECT,
                            program,
                            attach_point: format!("{point} {}:{function}", library.display()),
                            source: Box::new(source),
                        })
                    }
                }
            }
        }
        match (attached, last_error) {
            (0, Some(error)) => Err(error),
            _ => Ok(attached),
        }
    }

    /// Attaches the Go `crypto/tls` probes to the executable at `path` (as
    /// this process sees it), for every process that runs it: at the call
    /// of `(*Conn).Read` and `(*Conn).Write` (after their stack check) and
    /// at each return instruction of Read (file offsets from
    /// [`crate::protocols::gotls::inspect`]).
    /// Returns how many probes were attached; all or none.
    pub fn attach_go_tls(&mut self, path: &Path, go: &crate::protocols::gotls::GoTls) -> Result<usize, LoadError> {
        let mut links = Vec::new();
        let mut attached = 0;
        for ((enter, ret), probes) in GO_TLS_PROGRAMS.iter().zip([&go.read, &go.write]) {
            let points = std::iter::once((*enter, probes.entry)).chain(probes.returns.iter().map(|at| (*ret, *at)));
            for (program, offset) in points {
                let prog: &mut UProbe = self.object.program_as(program)?;
                match prog.attach(
                    UProbeAttachLocation::AbsoluteOffset(offset),
                    path,
                    UProbeScope::AllProcesses,
                ) {
                    Ok(link) => {
                        links.push((program, link));
                        attached += 1;
                    }
                    Err(source) => {
                        // A function probed at its entry but not at every
                        // return would leave calls noted and never ended.
                        for (program, link) in links {
                            if let Ok(prog) = self.object.program_as::<UProbe>(program) {
                                let _ = prog.detach(link);
                            }
                        }
                        return Err(LoadError::Attach {
                            object: OBJECT,
                            program,
                            attach_point: format!("uprobe {}:{offset:#x}", path.display()),
                            source: Box::new(source),
                        });
                    }
                }
            }
        }
        Ok(attached)
    }

    /// Where the `tls.Conn` of process `pid` (a Go program) keeps its fd.
    pub fn set_go_offsets(&mut self, pid: u32, offsets: ProtoGoOffsets) {
        if let Err(error) = self.go_offsets.insert(pid, offsets, 0) {
            tracing::debug!(pid, %error, "cannot record a Go process's offsets");
        }
    }

    /// Forgets the kernel's entries of the connections of a process that
    /// exited (a new process with its pid must not inherit them).
    pub fn forget(&mut self, pid: u32, fds: impl IntoIterator<Item = u32>) {
        let _ = self.go_offsets.remove(&pid);
        for fd in fds {
            if self.conns.remove(&ConnKey { pid, fd }).is_ok() {
                self.forgotten += 1;
            }
        }
    }

    /// Stops capturing a connection whose bytes user space found to be no
    /// protocol it parses (its gate becomes "ignored"), unless the fd has
    /// since become another connection. Returns whether it was marked.
    pub fn ignore(&mut self, pid: u32, fd: u32, generation: u64) -> bool {
        let key = ConnKey { pid, fd };
        let Ok(mut value) = self.conns.get(&key, 0) else {
            return false;
        };
        let at = CONN_GENERATION_OFFSET;
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&value[at..at + 8]);
        if u64::from_ne_bytes(stamp) != generation {
            return false;
        }
        value[CONN_GATE_OFFSET] = GATE_IGNORED;
        // BPF_EXIST: a connection closed meanwhile is not re-created.
        self.conns.insert(key, value, 2).is_ok()
    }

    /// What the programs lost so far (slots `PROTO_STAT_*`, and
    /// [`PROTO_LIVE_CONNS`], [`PROTO_FORGOTTEN_CONNS`]).
    pub fn stats(&self) -> Result<StatTotals, ReadError> {
        let mut totals = self.stats.read()?;
        totals.push(self.conns.keys().filter(Result::is_ok).count() as u64);
        totals.push(self.forgotten);
        Ok(totals)
    }

    /// Run time and count of each program (non-zero only while BPF stats
    /// are enabled, kernel 5.8+).
    pub fn program_stats(&self) -> Vec<ProgramStats> {
        self.object.program_stats()
    }
}

/// Attaches `enter_NAME` (unless `exit_only`) and `exit_NAME` to the
/// syscall's tracepoints.
fn attach_syscall(object: &mut Object, name: &'static str, exit_only: bool) -> Result<(), LoadError> {
    let (enter, exit) = program_names(name);
    if !exit_only {
        object.attach_tracepoint(enter, "syscalls", &format!("sys_enter_{name}"))?;
    }
    object.attach_tracepoint(exit, "syscalls", &format!("sys_exit_{name}"))
}

/// The static program names of a syscall's pair.
fn program_names(name: &str) -> (&'static str, &'static str) {
    macro_rules! names {
        ($($n:literal),*) => {
            match name {
                $($n => (concat!("enter_", $n), concat!("exit_", $n)),)*
                other => unreachable!("no programs for syscall {other}"),
            }
        };
    }
    names!(
        "read",
        "write",
        "readv",
        "writev",
        "recvfrom",
        "sendto",
        "recvmsg",
        "sendmsg",
        "recvmmsg",
        "sendmmsg",
        "sendfile64",
        "connect",
        "accept",
        "accept4"
    )
}

/// Loads and attaches the programs, then detaches them: `sonde doctor`'s trial.
pub fn trial() -> Result<(), LoadError> {
    ProtocolPrograms::load(&Options::default()).map(drop)
}
