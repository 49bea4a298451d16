//! Which source types run eBPF programs, and how `sonde doctor` tries
//! each one for real. A source that adds a `bpf/<source>.bpf.c` adds its
//! line to [`SOURCES`]; `core` knows nothing of this.

use crate::error::LoadError;

/// An eBPF-based source type.
#[derive(Clone, Copy, Debug)]
pub struct EbpfSource {
    /// The source type name, as registered (`disk_latency`).
    pub source_type: &'static str,
    /// The oldest kernel it supports.
    pub min_kernel: (u32, u32),
    /// What it attaches to, for messages (`tracepoint block:block_rq_issue`).
    pub attach_points: &'static [&'static str],
    /// Loads and attaches its programs with default options, then detaches.
    pub trial: fn() -> Result<(), LoadError>,
}

/// Every eBPF-based source type.
pub const SOURCES: &[EbpfSource] = &[
    EbpfSource {
        source_type: "disk_latency",
        min_kernel: (5, 5),
        attach_points: &[
            "tracepoint block:block_rq_insert",
            "tracepoint block:block_rq_issue",
            "tracepoint block:block_rq_complete",
        ],
        trial: crate::disk_latency::trial,
    },
    EbpfSource {
        source_type: "profile",
        // The BPF ring buffer that announces new processes.
        min_kernel: (5, 8),
        attach_points: &[
            "perf event software cpu-clock on every online CPU",
            "tracepoint sched:sched_process_exec",
        ],
        trial: crate::profile::trial,
    },
    EbpfSource {
        source_type: "tcp",
        min_kernel: (5, 5),
        attach_points: &[
            "tracepoint sock:inet_sock_set_state",
            "tracepoint tcp:tcp_retransmit_skb",
            "tracepoint tcp:tcp_retransmit_synack",
            "tracepoint tcp:tcp_send_reset",
            "tracepoint tcp:tcp_receive_reset",
            "tracepoint skb:kfree_skb (optional, 5.17+)",
        ],
        trial: crate::tcp::trial,
    },
    EbpfSource {
        source_type: "net_flows",
        min_kernel: (5, 9),
        attach_points: &[
            "tracepoint sock:inet_sock_set_state",
            "iter/tcp",
            "cgroup/sock_create on the cgroup v2 root",
            "cgroup_skb ingress and egress on the cgroup v2 root",
        ],
        trial: crate::net_flows::trial,
    },
];

/// The eBPF source type named `source_type`, if it is one.
pub fn find(source_type: &str) -> Option<&'static EbpfSource> {
    SOURCES.iter().find(|s| s.source_type == source_type)
}
