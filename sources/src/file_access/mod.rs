//! `source "file_access"`: an audit of file opens, filtered in the kernel.
//!
//! The eBPF programs ([`bpf`]: `bpf/file_access.bpf.c` and its loader)
//! hook the entry and exit tracepoints of `open`, `openat`, `openat2` and
//! `creat`. At the entry the cheap filters run — cgroup, process name,
//! what the flags ask for — and the call's name and flags wait for the
//! exit. There the opened file is found from the returned fd, so a
//! relative name, a symlink or a directory fd resolve to the real file;
//! the path policy matches when the file or one of its ancestors (mounts
//! crossed) is one of the policy's directories, compared by device and
//! inode (no string work); a failed open is matched by the name it asked
//! for. Matching opens are deduplicated per (process, file, flags) within
//! `dedup_window`, limited to `rate_limit` per second per cgroup, and sent
//! with the dentry names of their path through a ring buffer. Every open
//! left out is counted by reason (`sonde_file_access_dropped_total`).
//!
//! Each report is a `file.open` log record: `process.pid`, `thread.id`,
//! `process.executable.name`, `cgroup.id`, `user.id` (pod enrichment keys
//! on the cgroup), with the fields `file.path`, `sonde.file.access`
//! (`read,write,create,truncate`), `sonde.file.open_flags`,
//! `sonde.syscall`, and `sonde.file.fd` or, for a failure, `error.type`
//! (`ENOENT`) at severity warn.
//!
//! **Not seen:** opens through io_uring (`IORING_OP_OPENAT` does not pass
//! the syscall tracepoints), files reached without an open (inherited or
//! received fds); `unlink`, `rename` and `chmod` are not audited yet.
//! Paths deeper than 16 components keep their last 16 (`…/a/b`); a path
//! policy directory created after the source started matches failed opens
//! only (restart or reload to match it by identity).
//!
//! Minimum kernel 5.8 (ring buffer, BTF).

pub mod bpf;
mod collect;
mod config;
pub mod conformance;
mod run;
#[cfg(test)]
mod tests;

pub use collect::{drain, errno_name, Collector, ACCESS, DROPPED_TOTAL, ERROR, FD, FILE_OPEN, PATH, SYSCALL};
pub use config::{FileAccessSourceConfig, Match, FLAGS};
