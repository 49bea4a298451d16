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
