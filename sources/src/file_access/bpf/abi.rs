//! Rust mirrors of `file_access.h`. The constants are generated from the
//! header by the crate's `build.rs`; the struct is checked field by field
//! against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

pub use sonde_ebpf::owners::comm_str;

include!(concat!(env!("OUT_DIR"), "/file_access_consts.rs"));

const DEPTH: usize = FA_DEPTH as usize;
const NAME_LEN: usize = FA_NAME_LEN as usize;

/// `struct fa_event`: one reported open.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaEvent {
    pub mono_ns: u64,
    pub cgroup_id: u64,
    pub ino: u64,
    pub dev: u32,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub ret: i32,
    pub open_flags: u32,
    pub access: u32,
    pub op: u32,
    pub depth: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
    pub path: [[u8; NAME_LEN]; DEPTH],
    pub request: [u8; FA_REQUEST_LEN as usize],
}

impl FaEvent {
    /// Reads an event from a ring-buffer record (None when too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<FaEvent> {
        if bytes.len() < std::mem::size_of::<FaEvent>() {
            return None;
        }
        // SAFETY: the length is checked; every bit pattern is valid, and
        // read_unaligned copes with the record's alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<FaEvent>()) })
    }

    /// The opened file's absolute path (`/etc/hosts`), or for a failed
    /// open the name as requested; `…` leads a path deeper than the
    /// kernel's walk.
    pub fn path(&self) -> String {
        if self.ret < 0 {
            return c_str(&self.request);
        }
        let depth = (self.depth as usize).min(DEPTH);
        let mut path = String::new();
        if self.depth as usize > DEPTH {
            path.push('…');
        }
        // Empty slots are mount crossings.
        for name in self.path[..depth].iter().rev().filter(|n| n[0] != 0) {
            path.push('/');
            path.push_str(&c_str(name));
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// What the open asked for: `read`, `write`, `create`, `truncate`.
    pub fn access_names(&self) -> Vec<&'static str> {
        [
            (FA_READ, "read"),
            (FA_WRITE, "write"),
            (FA_CREATE, "create"),
            (FA_TRUNCATE, "truncate"),
        ]
        .into_iter()
        .filter(|(bit, _)| self.access & bit != 0)
        .map(|(_, name)| name)
        .collect()
    }
}

fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn the_event_matches_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "fa_event",
            FaEvent {
                mono_ns,
                cgroup_id,
                ino,
                dev,
                pid,
                tid,
                uid,
                ret,
                open_flags,
                access,
                op,
                depth,
                _pad,
                comm,
                path,
                request
            }
        );
    }

    fn event() -> FaEvent {
        FaEvent {
            mono_ns: 0,
            cgroup_id: 0,
            ino: 0,
            dev: 0,
            pid: 1,
            tid: 1,
            uid: 0,
            ret: 3,
            open_flags: 0,
            access: FA_WRITE | FA_CREATE,
            op: FA_OP_OPENAT,
            depth: 2,
            _pad: 0,
            comm: [0; 16],
            path: [[0; NAME_LEN]; DEPTH],
            request: [0; FA_REQUEST_LEN as usize],
        }
    }

    #[test]
    fn paths_join_from_the_root_and_failures_keep_the_request() {
        let mut e = event();
        e.path[0][..5].copy_from_slice(b"hosts");
        e.path[1][..3].copy_from_slice(b"etc");
        assert_eq!(e.path(), "/etc/hosts");
        assert_eq!(e.access_names(), vec!["write", "create"]);
        e.ret = -2;
        e.request[..10].copy_from_slice(b"nope/there");
        assert_eq!(e.path(), "nope/there");
    }
}
