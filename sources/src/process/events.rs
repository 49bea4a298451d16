//! Records and the processes they name become `Log` events: the names of
//! their fields and attributes (OpenTelemetry's `process.*` where it has
//! one), and the shapes of the ancestry.
//!
//! Attributes (where it came from, what `pod_enrich` keys on):
//! `process.pid`, `process.executable.name`, `process.executable.path`,
//! `cgroup.id`, the node. Fields (what happened): see the constants.

use std::sync::Arc;

use humantime_serde::re::humantime;
use sonde_core::event::{keys, Attributes, Log, SharedStr, Timestamp};

use super::ancestry::Process;
use super::bpf::{ExecRecord, ProcExit, PROC_FLAG_ARGS_TRUNCATED};

/// Event name of an exec.
pub const EXEC: &str = "process.exec";
/// Event name of a process' exit (its last thread's).
pub const EXIT: &str = "process.exit";
/// Event name of a new process (only with `fork = true`).
pub const FORK: &str = "process.fork";

/// Field: the process image's stable id (`node:key_ns:pid`).
pub const EXEC_ID: &str = "sonde.process.exec_id";
/// Field: the parent's pid.
pub const PARENT_PID: &str = "process.parent_pid";
/// Field: the parent's exec id.
pub const PARENT_EXEC_ID: &str = "sonde.process.parent.exec_id";
/// Field: the parent's executable.
pub const PARENT_EXE: &str = "sonde.process.parent.executable.path";
/// Field: argv, a JSON array of strings (a prefix when truncated).
pub const ARGS: &str = "process.command_args";
/// Field: whether argv was longer than kept (`args` is a byte-exact prefix).
pub const ARGS_TRUNCATED: &str = "sonde.process.args_truncated";
/// Field: the working directory at exec.
pub const CWD: &str = "process.working_directory";
/// Field: effective uid.
pub const USER_ID: &str = "process.user.id";
/// Field: real uid.
pub const REAL_USER_ID: &str = "process.real_user.id";
/// Field: effective gid.
pub const GROUP_ID: &str = "process.group.id";
/// Field: real gid.
pub const REAL_GROUP_ID: &str = "process.real_group.id";
/// Field: login (audit) uid, when set.
pub const LOGIN_USER_ID: &str = "sonde.process.login_user.id";
/// Field: when the process started (RFC 3339).
pub const CREATION_TIME: &str = "process.creation.time";
/// Field: where the process' entry came from (`exec`, `fork`, `procfs`, `unknown`).
pub const ORIGIN: &str = "sonde.process.origin";
/// Field: the parent chain, nearest first, a JSON array of
/// `{"pid", "exec_id", "binary", "origin"}` (at most `ancestry_depth`).
pub const ANCESTRY: &str = "sonde.process.ancestry";
/// Field: exit code, when the process exited (not killed).
pub const EXIT_CODE: &str = "process.exit.code";
/// Field: the signal that killed it.
pub const EXIT_SIGNAL: &str = "sonde.process.exit.signal";
/// Field: whether it dumped core.
pub const CORE_DUMPED: &str = "sonde.process.exit.core_dumped";
/// Field: when it exited (RFC 3339).
pub const EXIT_TIME: &str = "process.exit.time";
/// Field: its lifetime, start to exit, ns.
pub const LIFETIME: &str = "sonde.process.lifetime_ns";
/// Field: the thread whose exit ended the process.
pub const THREAD_ID: &str = "thread.id";

/// Unset login uid.
const NO_LOGIN_UID: u32 = u32::MAX;

/// What every event of a process carries: its attributes, and the fields
/// of identity and ancestry.
pub fn process_log(name: &'static str, process: &Process, depth: usize, node: &SharedStr, at: Timestamp) -> Log {
    let mut log = Log::new(name);
    log.timestamp = at;
    log.attributes = attributes(process, node);
    let fields = &mut log.fields;
    fields.insert(EXEC_ID, process.exec_id.clone());
    fields.insert(ORIGIN, process.origin.as_str());
    if process.ppid != 0 {
        fields.insert(PARENT_PID, process.ppid);
    }
    if let Some(parent) = &process.parent {
        fields.insert(PARENT_EXEC_ID, parent.exec_id.clone());
        if !parent.binary.is_empty() {
            fields.insert(PARENT_EXE, parent.binary.clone());
        }
    }
    fields.insert(ANCESTRY, ancestry_json(process, depth));
    log
}

/// The attributes of a process' events.
pub fn attributes(process: &Process, node: &SharedStr) -> Attributes {
    let mut attributes = Attributes::new().with(keys::PID, process.pid);
    if !process.name.is_empty() {
        attributes.insert(keys::COMM, process.name.clone());
    }
    if !process.binary.is_empty() {
        attributes.insert(keys::EXE, process.binary.clone());
    }
    if process.cgroup_id != 0 {
        attributes.insert(keys::CGROUP_ID, process.cgroup_id);
    }
    attributes.with(keys::node(), node.clone())
}

/// The parent chain as JSON, nearest first, at most `depth` entries.
pub fn ancestry_json(process: &Process, depth: usize) -> String {
    let chain: Vec<serde_json::Value> = process
        .ancestors()
        .take(depth)
        .map(|p| {
            serde_json::json!({
                "pid": p.pid,
                "exec_id": p.exec_id.as_str(),
                "binary": p.binary.as_str(),
                "origin": p.origin.as_str(),
            })
        })
        .collect();
    serde_json::Value::Array(chain).to_string()
}

/// The exec event.
pub fn exec_log(
    record: &ExecRecord,
    process: &Arc<Process>,
    depth: usize,
    node: &SharedStr,
    wall: impl Fn(u64) -> Timestamp,
) -> Log {
    let fixed = &record.fixed;
    let mut log = process_log(EXEC, process, depth, node, wall(fixed.head.time_ns));
    let args = super::bpf::split_args(&record.args);
    let fields = &mut log.fields;
    fields.insert(ARGS, serde_json::to_string(&args).unwrap_or_default());
    fields.insert(ARGS_TRUNCATED, fixed.head.flags & PROC_FLAG_ARGS_TRUNCATED != 0);
    fields.insert(CWD, record.cwd.clone());
    fields.insert(USER_ID, fixed.euid);
    fields.insert(REAL_USER_ID, fixed.uid);
    fields.insert(GROUP_ID, fixed.egid);
    fields.insert(REAL_GROUP_ID, fixed.gid);
    if fixed.auid != NO_LOGIN_UID {
        fields.insert(LOGIN_USER_ID, fixed.auid);
    }
    fields.insert(CREATION_TIME, rfc3339(wall(fixed.head.start_ns)));
    log
}

/// The exit event.
pub fn exit_log(
    record: &ProcExit,
    process: &Arc<Process>,
    depth: usize,
    node: &SharedStr,
    wall: impl Fn(u64) -> Timestamp,
) -> Log {
    let head = &record.head;
    let mut log = process_log(EXIT, process, depth, node, wall(head.time_ns));
    let fields = &mut log.fields;
    match Status::from_wait(record.status) {
        Status::Exited(code) => fields.insert(EXIT_CODE, code),
        Status::Killed { signal, core } => {
            fields.insert(EXIT_SIGNAL, signal);
            fields.insert(CORE_DUMPED, core);
        }
    }
    fields.insert(THREAD_ID, head.tid);
    fields.insert(EXIT_TIME, rfc3339(wall(head.time_ns)));
    fields.insert(CREATION_TIME, rfc3339(wall(head.start_ns)));
    fields.insert(LIFETIME, head.time_ns.saturating_sub(head.start_ns));
    log
}

/// How a process ended, from a wait(2) status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It exited with this code.
    Exited(u32),
    /// A signal killed it.
    Killed {
        /// The signal number.
        signal: u32,
        /// Whether it dumped core.
        core: bool,
    },
}

impl Status {
    /// Decodes a wait(2) status (`code << 8`, or `signal | 0x80 core`).
    pub fn from_wait(status: u32) -> Status {
        match status & 0x7f {
            0 => Status::Exited((status >> 8) & 0xff),
            signal => Status::Killed {
                signal,
                core: status & 0x80 != 0,
            },
        }
    }
}

/// A timestamp as RFC 3339 text, ns precision.
pub fn rfc3339(at: Timestamp) -> String {
    humantime::format_rfc3339_nanos(at.to_system_time()).to_string()
}
