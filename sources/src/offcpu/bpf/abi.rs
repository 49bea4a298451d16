//! Rust mirrors of `offcpu.h`. The constants are generated from the
//! header by the crate's `build.rs`; the structs are checked field by field
//! against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

pub use sonde_ebpf::owners::comm_str;

include!(concat!(env!("OUT_DIR"), "/offcpu_consts.rs"));

/// `struct offcpu_control`: the active counts map and the stack epoch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffcpuControl {
    pub counts_set: u32,
    pub epoch: u32,
}

// SAFETY: repr(C), two u32, no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for OffcpuControl {}

/// `struct offcpu_key`: one process, state and pair of stacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OffcpuKey {
    pub pid: u32,
    pub state: u32,
    pub user_stack_id: i32,
    pub kernel_stack_id: i32,
    pub stack_set: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

// SAFETY: repr(C), six 4-byte fields and 16 bytes: no padding.
unsafe impl sonde_ebpf::aya::Pod for OffcpuKey {}

/// `struct offcpu_value`: time off CPU and samples.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffcpuValue {
    pub total_ns: u64,
    pub count: u64,
}

// SAFETY: repr(C), two u64, no padding.
unsafe impl sonde_ebpf::aya::Pod for OffcpuValue {}

/// The label of an `OFFCPU_STATE_*` value: what the thread was doing off CPU.
pub fn state_name(state: u32) -> &'static str {
    match state {
        OFFCPU_STATE_RUNNABLE => "preempted",
        OFFCPU_STATE_SLEEPING => "sleeping",
        OFFCPU_STATE_UNINTERRUPTIBLE => "uninterruptible",
        OFFCPU_STATE_IDLE => "idle",
        OFFCPU_STATE_STOPPED => "stopped",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(btf, "offcpu_control", OffcpuControl { counts_set, epoch });
        sonde_ebpf::assert_layout!(
            btf,
            "offcpu_key",
            OffcpuKey {
                pid,
                state,
                user_stack_id,
                kernel_stack_id,
                stack_set,
                _pad,
                comm
            }
        );
        sonde_ebpf::assert_layout!(btf, "offcpu_value", OffcpuValue { total_ns, count });
    }

    #[test]
    fn states_are_named() {
        assert_eq!(state_name(OFFCPU_STATE_RUNNABLE), "preempted");
        assert_eq!(state_name(OFFCPU_STATE_UNINTERRUPTIBLE), "uninterruptible");
        assert_eq!(state_name(99), "other");
        // The id marking an expired stack is profile's ESTALE.
        assert_eq!(OFFCPU_STACK_EXPIRED as i32, crate::profile::bpf::ESTALE);
    }
}
