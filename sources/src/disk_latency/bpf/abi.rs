//! Rust mirrors of `disk_latency.h`. The constants are generated from the
//! header by the crate's `build.rs`; the structs are checked field by
//! field against the compiled object's BTF (`tests` below).

#![allow(missing_docs)]

use std::fmt;

include!(concat!(env!("OUT_DIR"), "/disk_latency_consts.rs"));

/// Slots of the latency and queue-time histograms.
pub const LATENCY_SLOTS: usize = DISK_LATENCY_SLOTS as usize;
/// Slots of the request-size histogram.
pub const SIZE_SLOTS: usize = DISK_SIZE_SLOTS as usize;

/// `struct disk_key`: one device and operation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DiskKey {
    /// Kernel dev_t: `major << 20 | minor`.
    pub dev: u32,
    /// `DISK_OP_*`.
    pub op: u32,
}

impl DiskKey {
    /// The device's major number.
    pub fn major(&self) -> u32 {
        self.dev >> 20
    }

    /// The device's minor number.
    pub fn minor(&self) -> u32 {
        self.dev & ((1 << 20) - 1)
    }

    /// The operation.
    pub fn operation(&self) -> DiskOp {
        DiskOp::from_raw(self.op)
    }
}

// SAFETY: repr(C), two u32 fields and no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for DiskKey {}

/// `struct disk_hist`: everything counted for one key, on one CPU (or summed).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskHist {
    /// Issue → complete, log2-ns slots (see the header for the slot rule).
    pub latency: [u64; LATENCY_SLOTS],
    /// Insert → issue, log2-ns slots.
    pub queue: [u64; LATENCY_SLOTS],
    /// Completed bytes per request, log2 slots.
    pub size: [u64; SIZE_SLOTS],
    /// Sum of the timed latencies, ns.
    pub latency_sum_ns: u64,
    /// Sum of the queue times, ns.
    pub queue_sum_ns: u64,
    /// Completed requests, timed or not.
    pub requests: u64,
    /// Completed bytes.
    pub bytes: u64,
}

// SAFETY: repr(C), only u64 fields and arrays of u64, no padding: every bit
// pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for DiskHist {}

impl Default for DiskHist {
    fn default() -> Self {
        DiskHist {
            latency: [0; LATENCY_SLOTS],
            queue: [0; LATENCY_SLOTS],
            size: [0; SIZE_SLOTS],
            latency_sum_ns: 0,
            queue_sum_ns: 0,
            requests: 0,
            bytes: 0,
        }
    }
}

impl DiskHist {
    /// Adds `other` (another CPU's values) into `self`.
    pub fn add(&mut self, other: &DiskHist) {
        let add = |a: &mut [u64], b: &[u64]| a.iter_mut().zip(b).for_each(|(a, b)| *a = a.wrapping_add(*b));
        add(&mut self.latency, &other.latency);
        add(&mut self.queue, &other.queue);
        add(&mut self.size, &other.size);
        self.latency_sum_ns = self.latency_sum_ns.wrapping_add(other.latency_sum_ns);
        self.queue_sum_ns = self.queue_sum_ns.wrapping_add(other.queue_sum_ns);
        self.requests = self.requests.wrapping_add(other.requests);
        self.bytes = self.bytes.wrapping_add(other.bytes);
    }

    /// Requests that were timed (their issue was seen).
    pub fn timed(&self) -> u64 {
        self.latency.iter().sum()
    }

    /// Requests whose queue time was measured.
    pub fn queued(&self) -> u64 {
        self.queue.iter().sum()
    }
}

/// `struct disk_depth`: one device's requests per stage now, and the sums
/// of their entry minus exit times (see [`DiskDepth::integral_ns`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskDepth {
    /// Inserted into the I/O scheduler, not yet issued.
    pub queued: i64,
    pub queued_ts_sum: i64,
    /// Issued to the device, not yet completed.
    pub issued: i64,
    pub issued_ts_sum: i64,
}

// SAFETY: repr(C), four i64 fields, no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for DiskDepth {}

impl DiskDepth {
    /// The time integrals of the queued and issued depths from the
    /// programs' load to `now_ns` (CLOCK_MONOTONIC, the programs' clock),
    /// in request·ns: `depth × now − Σ(entry − exit times)`.
    pub fn integral_ns(&self, now_ns: u64) -> (i128, i128) {
        let at = |depth: i64, ts_sum: i64| i128::from(depth) * i128::from(now_ns) - i128::from(ts_sum);
        (at(self.queued, self.queued_ts_sum), at(self.issued, self.issued_ts_sum))
    }
}

/// `struct disk_depth_max_key`: a device and an epoch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DiskDepthMaxKey {
    pub dev: u32,
    pub epoch: u32,
}

// SAFETY: repr(C), two u32 fields, no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for DiskDepthMaxKey {}

/// `struct disk_depth_max`: the highest depths of an epoch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskDepthMax {
    pub queued: i64,
    pub issued: i64,
}

// SAFETY: repr(C), two i64 fields, no padding: every bit pattern is valid.
unsafe impl sonde_ebpf::aya::Pod for DiskDepthMax {}

/// A block operation, as the programs classify it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DiskOp {
    Read,
    Write,
    Flush,
    Discard,
    Other,
}

impl DiskOp {
    /// Every operation, in `DISK_OP_*` order.
    pub const ALL: [DiskOp; DISK_OP_COUNT as usize] = [
        DiskOp::Read,
        DiskOp::Write,
        DiskOp::Flush,
        DiskOp::Discard,
        DiskOp::Other,
    ];

    /// From a `DISK_OP_*` value (unknown values are `Other`).
    pub fn from_raw(op: u32) -> DiskOp {
        match op {
            DISK_OP_READ => DiskOp::Read,
            DISK_OP_WRITE => DiskOp::Write,
            DISK_OP_FLUSH => DiskOp::Flush,
            DISK_OP_DISCARD => DiskOp::Discard,
            _ => DiskOp::Other,
        }
    }

    /// The `operation` attribute value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DiskOp::Read => "read",
            DiskOp::Write => "write",
            DiskOp::Flush => "flush",
            DiskOp::Discard => "discard",
            DiskOp::Other => "other",
        }
    }
}

impl fmt::Display for DiskOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_ebpf::btf_layout::ObjectBtf;
    use sonde_ebpf::slot::log2_bounds;

    #[test]
    fn structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(btf, "disk_key", DiskKey { dev, op });
        sonde_ebpf::assert_layout!(
            btf,
            "disk_hist",
            DiskHist {
                latency,
                queue,
                size,
                latency_sum_ns,
                queue_sum_ns,
                requests,
                bytes
            }
        );
    }

    #[test]
    fn depth_structs_match_the_compiled_object() {
        let btf = ObjectBtf::from_object(super::super::ELF);
        sonde_ebpf::assert_layout!(
            btf,
            "disk_depth",
            DiskDepth {
                queued,
                queued_ts_sum,
                issued,
                issued_ts_sum
            }
        );
        sonde_ebpf::assert_layout!(btf, "disk_depth_max_key", DiskDepthMaxKey { dev, epoch });
        sonde_ebpf::assert_layout!(btf, "disk_depth_max", DiskDepthMax { queued, issued });
    }

    #[test]
    fn the_depth_integral_counts_each_request_for_its_time_in_the_stage() {
        // One request issued at 10 and completed at 30, one issued at 40
        // and in flight: up to 100 the integral is 20 + 60.
        let depth = DiskDepth {
            issued: 1,
            issued_ts_sum: 10 - 30 + 40,
            ..DiskDepth::default()
        };
        assert_eq!(depth.integral_ns(100), (0, 80));
    }

    #[test]
    fn bounds_follow_the_slot_rule() {
        let b = log2_bounds(DISK_SIZE_MIN_SHIFT, SIZE_SLOTS, 1.0);
        assert_eq!(b.len(), SIZE_SLOTS - 1);
        assert_eq!(b[0], 512.0);
        assert_eq!(b[1], 1024.0);
        assert_eq!(DiskOp::from_raw(DISK_OP_DISCARD), DiskOp::Discard);
        assert_eq!(DiskOp::ALL[DISK_OP_OTHER as usize], DiskOp::Other);
    }
}
