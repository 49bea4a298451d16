//! `source "file_io"`: file I/O latency and bytes per process and file,
//! counted in the kernel.
//!
//! The eBPF programs ([`bpf`]: `bpf/file_io.bpf.c` and its loader) hook the
//! entry and exit tracepoints of the read, write and sync system calls. At
//! the entry the fd is looked up in the task's fd table (a CO-RE walk, no
//! kprobe): anything but a regular file (sockets, pipes, terminals,
//! devices) returns there, without a map write. A regular file starts a
//! timer keyed by thread; at the exit the call's duration, result and
//! bytes are added to the (process, cgroup, device, inode) entry. The
//! first call of a process on a file sends a notice through a ring buffer;
//! a thread in the agent reads the file's path from `/proc/PID/fd/FD`
//! (checking the link still leads to the same inode), once per file. Every
//! `interval` the source emits:
//!
//! | metric | kind | unit |
//! |---|---|---|
//! | `sonde_file_io_bytes_total` | counter, by `sonde.file.io.operation` (`read`, `write`) | By |
//! | `sonde_file_io_operations_total` | counter, by operation (`read`, `write`, `fsync`) | calls |
//! | `sonde_file_io_errors_total` | counter, by operation (only when some failed) | calls |
//! | `sonde_file_io_duration_seconds` | histogram, by operation | s |
//!
//! with `process.pid`, `process.executable.name`, `cgroup.id`, `file.path`
//! and the node name. The `top_files` (process, file) pairs with the most
//! bytes are reported under their path; each process' other files are
//! summed under `file.path="[other]"`, so per-process sums stay exact with
//! a bounded number of series. A file whose fd was closed before the agent
//! read its path is named `…/NAME` (its last component).
//!
//! **Not seen** (no read or write call to hook): I/O through memory
//! mappings, io_uring, POSIX AIO, `sendfile`/`splice`/`copy_file_range`;
//! page-cache hits and misses are not told apart (the `disk_latency`
//! source shows the device side). Pairs outside the top that stayed idle
//! for an interval leave the kernel map (their totals move to `[other]`);
//! a call landing on such a pair in the instant between the read and the
//! removal is lost.
//!
//! **Cost.** Every read and write on the node (files or not) pays the fd
//! lookup at its entry; a file call also a hash update at each end. Any
//! syscall tracepoint also moves every task's system calls to the slower
//! traced path, as the `protocols` source does.
//!
//! Minimum kernel 5.8 (BTF, ring buffer); needs CAP_BPF, CAP_PERFMON and,
//! for other users' files, CAP_SYS_PTRACE.

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
pub mod paths;
#[cfg(test)]
mod tests;

pub use collect::{Collector, BYTES, DURATION, ERRORS, OPERATION, OPERATIONS, OTHER, PATH};
pub use config::{FileIoSourceConfig, DEFAULT_INTERVAL, DEFAULT_MAX_FILES, DEFAULT_TOP_FILES};
