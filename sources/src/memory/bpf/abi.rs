//! Rust mirrors of `memory.h`. The constants are generated from the header
//! by the crate's `build.rs`; the structs are checked field by field against
//! the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

pub use sonde_ebpf::owners::comm_str;

include!(concat!(env!("OUT_DIR"), "/memory_consts.rs"));

/// Page orders counted (the last slot holds the larger ones).
pub const ORDERS: usize = MEM_ORDERS as usize;
/// Slots of the allocation-size histogram.
pub const SIZE_SLOTS: usize = MEM_SIZE_SLOTS as usize;

/// `struct mem_page_key`: one process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemPageKey {
    pub cgroup_id: u64,
    pub pid: u32,
    pub _pad: u32,
    pub comm: [u8; 16],
}

// SAFETY: repr(C), fields of 8, 4, 4 and 16 bytes: no padding, every bit
// pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for MemPageKey {}

/// `struct mem_page_counts`: page allocations and frees by order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemPageCounts {
    pub allocs: [u64; ORDERS],
    pub frees: [u64; ORDERS],
}

// SAFETY: repr(C), arrays of u64, no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for MemPageCounts {}

impl MemPageCounts {
    /// Adds another CPU's counts.
    pub fn add(&mut self, other: &MemPageCounts) {
        for i in 0..ORDERS {
            self.allocs[i] = self.allocs[i].wrapping_add(other.allocs[i]);
            self.frees[i] = self.frees[i].wrapping_add(other.frees[i]);
        }
    }

    /// Pages allocated (each allocation of order n is 2^n pages; the last
    /// slot counts as its own order).
    pub fn pages_allocated(&self) -> u64 {
        self.allocs.iter().enumerate().map(|(order, n)| n << order).sum()
    }

    /// Pages freed.
    pub fn pages_freed(&self) -> u64 {
        self.frees.iter().enumerate().map(|(order, n)| n << order).sum()
    }
}

/// `struct mem_proc`: one traced process' user-space allocations.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemProc {
    pub allocs: u64,
    pub frees: u64,
    pub alloc_bytes: u64,
    pub tracked: i64,
    pub size: [u64; SIZE_SLOTS],
}

impl Default for MemProc {
    fn default() -> Self {
        MemProc {
            allocs: 0,
            frees: 0,
            alloc_bytes: 0,
            tracked: 0,
            size: [0; SIZE_SLOTS],
        }
    }
}

// SAFETY: repr(C), 8-byte fields and an array of u64, no padding.
unsafe impl sonde_ebpf::aya::Pod for MemProc {}

/// `struct mem_stack_key`: a process and an allocation stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemStackKey {
    pub pid: u32,
    pub stack_id: i32,
}

// SAFETY: repr(C), two 4-byte fields, no padding.
unsafe impl sonde_ebpf::aya::Pod for MemStackKey {}

/// `struct mem_outstanding`: bytes and allocations not yet freed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemOutstanding {
    pub bytes: i64,
    pub allocs: i64,
}

// SAFETY: repr(C), two i64 fields, no padding.
unsafe impl sonde_ebpf::aya::Pod for MemOutstanding {}

/// Page fault kinds (`MEM_FAULT_KINDS`).
pub const FAULT_KINDS: usize = MEM_FAULT_KINDS as usize;
/// Slots of the reclaim-stall histogram.
pub const RECLAIM_SLOTS: usize = MEM_RECLAIM_SLOTS as usize;

/// `struct mem_fault_key`: a process, and a user stack when asked.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemFaultKey {
    pub cgroup_id: u64,
    pub pid: u32,
    pub stack_id: i32,
    pub comm: [u8; 16],
}

// SAFETY: repr(C), fields of 8, 4, 4 and 16 bytes: no padding.
unsafe impl sonde_ebpf::aya::Pod for MemFaultKey {}

/// `struct mem_fault_counts`: faults by kind (sample periods added).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemFaultCounts {
    pub faults: [u64; FAULT_KINDS],
}

// SAFETY: repr(C), an array of u64.
unsafe impl sonde_ebpf::aya::Pod for MemFaultCounts {}

/// `struct mem_reclaim_key`: a cgroup and a reclaim kind.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemReclaimKey {
    pub cgroup_id: u64,
    pub kind: u32,
    pub _pad: u32,
}

// SAFETY: repr(C), fields of 8, 4 and 4 bytes: no padding.
unsafe impl sonde_ebpf::aya::Pod for MemReclaimKey {}

/// `struct mem_reclaim_hist`: reclaim stall durations.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemReclaimHist {
    pub slots: [u64; RECLAIM_SLOTS],
    pub sum_ns: u64,
}

impl Default for MemReclaimHist {
    fn default() -> Self {
        MemReclaimHist {
            slots: [0; RECLAIM_SLOTS],
            sum_ns: 0,
        }
    }
}

impl MemReclaimHist {
    /// Adds another CPU's counts.
    pub fn add(&mut self, other: &MemReclaimHist) {
        for (a, b) in self.slots.iter_mut().zip(other.slots.iter()) {
            *a = a.wrapping_add(*b);
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
    }
}

// SAFETY: repr(C), u64 array and a u64: no padding.
unsafe impl sonde_ebpf::aya::Pod for MemReclaimHist {}

/// `struct mem_oom_event`: one OOM kill.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemOomEvent {
    pub mono_ns: u64,
    pub cgroup_id: u64,
    pub memcg_id: u64,
    pub memcg_usage_pages: u64,
    pub memcg_max_pages: u64,
    pub pid: u32,
    pub uid: u32,
    pub oom_score_adj: i16,
    pub from_victim: u8,
    pub _pad: [u8; 5],
    pub comm: [u8; 16],
}

impl MemOomEvent {
    /// Reads an event from a ring-buffer record (None when too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<MemOomEvent> {
        if bytes.len() < std::mem::size_of::<MemOomEvent>() {
            return None;
        }
        // SAFETY: the length is checked; every bit pattern is valid, and
        // read_unaligned copes with the record's alignment.
        Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<MemOomEvent>()) })
    }
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
            "mem_page_key",
            MemPageKey {
                cgroup_id,
                pid,
                _pad,
                comm
            }
        );
        sonde_ebpf::assert_layout!(btf, "mem_page_counts", MemPageCounts { allocs, frees });
        sonde_ebpf::assert_layout!(
            btf,
            "mem_proc",
            MemProc {
                allocs,
                frees,
                alloc_bytes,
                tracked,
                size
            }
        );
        sonde_ebpf::assert_layout!(btf, "mem_stack_key", MemStackKey { pid, stack_id });
        sonde_ebpf::assert_layout!(btf, "mem_outstanding", MemOutstanding { bytes, allocs });
        sonde_ebpf::assert_layout!(
            btf,
            "mem_fault_key",
            MemFaultKey {
                cgroup_id,
                pid,
                stack_id,
                comm
            }
        );
        sonde_ebpf::assert_layout!(btf, "mem_fault_counts", MemFaultCounts { faults });
        sonde_ebpf::assert_layout!(btf, "mem_reclaim_key", MemReclaimKey { cgroup_id, kind, _pad });
        sonde_ebpf::assert_layout!(btf, "mem_reclaim_hist", MemReclaimHist { slots, sum_ns });
        sonde_ebpf::assert_layout!(
            btf,
            "mem_oom_event",
            MemOomEvent {
                mono_ns,
                cgroup_id,
                memcg_id,
                memcg_usage_pages,
                memcg_max_pages,
                pid,
                uid,
                oom_score_adj,
                from_victim,
                _pad,
                comm
            }
        );
    }

    #[test]
    fn pages_count_by_order() {
        let mut counts = MemPageCounts::default();
        counts.allocs[0] = 3;
        counts.allocs[2] = 1;
        counts.frees[1] = 2;
        assert_eq!(counts.pages_allocated(), 7);
        assert_eq!(counts.pages_freed(), 4);
    }
}
