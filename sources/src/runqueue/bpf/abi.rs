//! Rust mirrors of `runqueue.h`. The constants are generated from the
//! header by the crate's `build.rs`; the structs are checked field by field
//! against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

pub use sonde_ebpf::owners::comm_str;

include!(concat!(env!("OUT_DIR"), "/runqueue_consts.rs"));

/// Slots of the latency histogram.
pub const SLOTS: usize = RQ_SLOTS as usize;

/// `struct rq_hist`: run-queue waits and context switches.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RqHist {
    pub slots: [u64; SLOTS],
    pub sum_ns: u64,
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Default for RqHist {
    fn default() -> Self {
        RqHist {
            slots: [0; SLOTS],
            sum_ns: 0,
            voluntary: 0,
            involuntary: 0,
        }
    }
}

impl RqHist {
    /// Adds another CPU's counts.
    pub fn add(&mut self, other: &RqHist) {
        for (slot, n) in self.slots.iter_mut().zip(other.slots) {
            *slot = slot.wrapping_add(n);
        }
        self.sum_ns = self.sum_ns.wrapping_add(other.sum_ns);
        self.voluntary = self.voluntary.wrapping_add(other.voluntary);
        self.involuntary = self.involuntary.wrapping_add(other.involuntary);
    }

    /// Number of waits measured.
    pub fn waits(&self) -> u64 {
        self.slots.iter().sum()
    }
}

// SAFETY: repr(C), arrays of u64 and u64 fields, no padding: every bit
// pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for RqHist {}

/// `struct rq_process_key`: a process in a cgroup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RqProcessKey {
    pub cgroup_id: u64,
    pub pid: u32,
    pub _pad: u32,
}

// SAFETY: repr(C), fields of 8, 4 and 4 bytes: no padding.
unsafe impl sonde_ebpf::aya::Pod for RqProcessKey {}

/// `struct rq_process`: a process' histogram and its name at first sight.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RqProcess {
    pub hist: RqHist,
    pub comm: [u8; 16],
}

// SAFETY: repr(C), a struct of u64 then 16 bytes: no padding.
unsafe impl sonde_ebpf::aya::Pod for RqProcess {}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "rq_hist",
            RqHist {
                slots,
                sum_ns,
                voluntary,
                involuntary
            }
        );
        sonde_ebpf::assert_layout!(btf, "rq_process_key", RqProcessKey { cgroup_id, pid, _pad });
        sonde_ebpf::assert_layout!(btf, "rq_process", RqProcess { hist, comm });
    }

    #[test]
    fn waits_are_the_slots_summed() {
        let mut hist = RqHist::default();
        hist.slots[0] = 2;
        hist.slots[5] = 3;
        assert_eq!(hist.waits(), 5);
    }
}
