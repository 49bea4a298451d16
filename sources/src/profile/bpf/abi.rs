//! Rust mirror of `profile.h`. The constants are generated from
//! the header by the crate's `build.rs`; the key struct is checked field by field
//! against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/profile_consts.rs"));

/// `errno` of a stack id: no such stack (a kernel thread's user stack, a
/// user-mode sample's kernel stack).
pub const EFAULT: i32 = 14;
/// `errno` of a stack id: its bucket held another stack.
pub const EEXIST: i32 = 17;
/// `errno` of a stack id: the stack map was full.
pub const ENOMEM: i32 = 12;
/// `errno` (ESTALE) a program puts in a stack id whose stack map was reset
/// since the stack was stored (`offcpu`'s long sleeps).
pub const ESTALE: i32 = 116;

/// `struct profile_key`: one process, thread and pair of stacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileKey {
    /// Thread group id (the process id); 0 for the idle task.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Id in the set's stack map, or `-errno`.
    pub user_stack_id: i32,
    /// Id in the set's stack map, or `-errno`.
    pub kernel_stack_id: i32,
    /// The thread's comm, NUL-padded.
    pub comm: [u8; PROFILE_COMM_LEN as usize],
    /// Hash of the unwound user stack (`user_stack_id` `-UNWIND_STACK_ID`), else 0.
    pub user_stack_hash: u64,
    /// The Python stack's id in the set's pystacks map, or a
    /// `PYTHON_STACK_*` value (see [`crate::profile::python`]).
    pub python_stack_id: u64,
    /// Why the user stack ends (`UNWIND_OUTCOME_*`).
    pub unwind_outcome: u8,
    pub pad: [u8; 7],
}

// SAFETY: repr(C), integer fields and byte arrays, no implicit padding
// (4 × 4 + 16 + 8 + 8 + 8 bytes): every bit pattern is a valid value.
unsafe impl sonde_ebpf::aya::Pod for ProfileKey {}

impl ProfileKey {
    /// The comm as text (up to the first NUL).
    pub fn comm(&self) -> String {
        let end = self.comm.iter().position(|b| *b == 0).unwrap_or(self.comm.len());
        String::from_utf8_lossy(&self.comm[..end]).into_owned()
    }

    /// The user stack's id, or why there is none.
    pub fn user_stack(&self) -> StackRef {
        StackRef::from_raw(self.user_stack_id)
    }

    /// The kernel stack's id, or why there is none.
    pub fn kernel_stack(&self) -> StackRef {
        StackRef::from_raw(self.kernel_stack_id)
    }
}

/// A stack id from the counts map, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StackRef {
    /// A stack of the drained set: in its stack map, or in its spill map
    /// when [`PROFILE_SPILL_BIT`] is set (see [`spill_slot`]).
    Id(u32),
    /// There is no such stack (kernel thread, or user-mode sample).
    Empty,
    /// Not stored: its hash bucket held another stack.
    Collision,
    /// Not stored: the stack map was full.
    MapFull,
    /// Stored in a stack map that was reset since.
    Expired,
    /// Another error from `bpf_get_stackid` (its errno).
    Error(i32),
}

impl StackRef {
    /// From the raw id (`>= 0`) or `-errno`.
    pub fn from_raw(raw: i32) -> StackRef {
        match raw {
            id if id >= 0 => StackRef::Id(id as u32),
            e if e == -EFAULT => StackRef::Empty,
            e if e == -EEXIST => StackRef::Collision,
            e if e == -ENOMEM => StackRef::MapFull,
            e if e == -ESTALE => StackRef::Expired,
            e => StackRef::Error(-e),
        }
    }
}

/// The slot in the spill map of a stack id that refers to it, `None` for
/// an id of the stack map.
pub fn spill_slot(id: u32) -> Option<u32> {
    (id & PROFILE_SPILL_BIT != 0).then_some(id & !PROFILE_SPILL_BIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn key_matches_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "profile_key",
            ProfileKey {
                pid,
                tid,
                user_stack_id,
                kernel_stack_id,
                comm,
                user_stack_hash,
                python_stack_id,
                unwind_outcome,
                pad
            }
        );
    }

    #[test]
    fn stack_ids_decode() {
        assert_eq!(StackRef::from_raw(7), StackRef::Id(7));
        assert_eq!(StackRef::from_raw(-14), StackRef::Empty);
        assert_eq!(StackRef::from_raw(-17), StackRef::Collision);
        assert_eq!(StackRef::from_raw(-12), StackRef::MapFull);
        assert_eq!(StackRef::from_raw(-116), StackRef::Expired);
        assert_eq!(StackRef::from_raw(-22), StackRef::Error(22));
        let spilled = (PROFILE_SPILL_BIT | 5) as i32;
        assert_eq!(StackRef::from_raw(spilled), StackRef::Id(PROFILE_SPILL_BIT | 5));
        assert_eq!(spill_slot(PROFILE_SPILL_BIT | 5), Some(5));
        assert_eq!(spill_slot(5), None);
        let mut key = ProfileKey {
            pid: 1,
            tid: 1,
            user_stack_id: 0,
            kernel_stack_id: 0,
            comm: [0; 16],
            user_stack_hash: 0,
            python_stack_id: 0,
            unwind_outcome: 0,
            pad: [0; 7],
        };
        key.comm[..4].copy_from_slice(b"bash");
        assert_eq!(key.comm(), "bash");
    }
}
