//! Rust mirrors of `process.h`. The constants are generated from the
//! header by the crate's `build.rs`; the structs are checked field by
//! field against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

pub use sonde_ebpf::owners::comm_str;

include!(concat!(env!("OUT_DIR"), "/process_consts.rs"));

/// `struct proc_key`: a process' identity and its parent's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcKey {
    pub key_ns: u64,
    pub parent_key_ns: u64,
    pub parent_start_ns: u64,
    pub ppid: u32,
    pub flags: u32,
}

// SAFETY: repr(C), 3 × 8 + 2 × 4 bytes, no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for ProcKey {}

/// `struct proc_head`: first in every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcHead {
    pub kind: u32,
    pub flags: u32,
    pub pid: u32,
    pub tid: u32,
    pub time_ns: u64,
    pub key: ProcKey,
    pub start_ns: u64,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
}

/// `struct proc_exec` up to its variable parts (`exe`, `cwd`, `args`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcExecFixed {
    pub head: ProcHead,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub auid: u32,
    pub args_len: u32,
    pub exe_len: u16,
    pub cwd_len: u16,
    pub _pad: u32,
}

/// Where `exe`, `cwd` and `args` start in a `struct proc_exec` record.
pub const EXEC_EXE_OFFSET: usize = std::mem::size_of::<ProcExecFixed>();
/// See [`EXEC_EXE_OFFSET`].
pub const EXEC_CWD_OFFSET: usize = EXEC_EXE_OFFSET + PROC_PATH_BUF as usize;
/// See [`EXEC_EXE_OFFSET`].
pub const EXEC_ARGS_OFFSET: usize = EXEC_CWD_OFFSET + PROC_PATH_BUF as usize;

/// `struct proc_exit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcExit {
    pub head: ProcHead,
    pub status: u32,
    pub _pad: u32,
}

/// `struct proc_rate`: one cgroup's exec rate window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcRate {
    pub window_ns: u64,
    pub count: u64,
    pub throttled: u64,
}

// SAFETY: repr(C), three u64, no padding.
unsafe impl sonde_ebpf::aya::Pod for ProcRate {}

/// Reads a `T` from the start of `bytes` (a record may be unaligned in the
/// ring); `None` when too short.
pub fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    if bytes.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: at least size_of::<T>() bytes are there; T is a repr(C)
    // plain-data mirror for which every bit pattern is valid (only
    // instantiated with the types of this module); read_unaligned copes
    // with any alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "proc_key",
            ProcKey {
                key_ns,
                parent_key_ns,
                parent_start_ns,
                ppid,
                flags
            }
        );
        sonde_ebpf::assert_layout!(
            btf,
            "proc_head",
            ProcHead {
                kind,
                flags,
                pid,
                tid,
                time_ns,
                key,
                start_ns,
                cgroup_id,
                comm
            }
        );
        sonde_ebpf::assert_layout!(btf, "proc_exit", ProcExit { head, status, _pad });
        sonde_ebpf::assert_layout!(
            btf,
            "proc_rate",
            ProcRate {
                window_ns,
                count,
                throttled
            }
        );
        // The fixed part of proc_exec: every field, then the paths where
        // the offsets say.
        let exec = btf.struct_layout("proc_exec");
        for (field, offset) in [
            ("head", std::mem::offset_of!(ProcExecFixed, head)),
            ("uid", std::mem::offset_of!(ProcExecFixed, uid)),
            ("auid", std::mem::offset_of!(ProcExecFixed, auid)),
            ("args_len", std::mem::offset_of!(ProcExecFixed, args_len)),
            ("exe_len", std::mem::offset_of!(ProcExecFixed, exe_len)),
            ("cwd_len", std::mem::offset_of!(ProcExecFixed, cwd_len)),
            ("exe", EXEC_EXE_OFFSET),
            ("cwd", EXEC_CWD_OFFSET),
            ("args", EXEC_ARGS_OFFSET),
        ] {
            assert_eq!(exec.field(field).offset, offset, "proc_exec.{field}");
        }
    }
}
