# source "memory": memory pressure and allocation patterns, counted in the
# kernel with eBPF (needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE;
# `sonde doctor` checks). For every process: page allocations by order,
# minor and major page faults; per cgroup: reclaim stalls; OOM kills as
# `memory.oom_kill` log records. User-space malloc/calloc/realloc/free only
# for the processes named here (uprobes cost microseconds per call: opt in
# per process).
#   sonde run --config configs/examples/memory.hcl
source "memory" "mem" {
  interval                = "10s"
  page_allocations        = true       # kmem:mm_page_alloc / mm_page_free, every event
  oom_kills               = true       # a log record per OOM kill: victim, its memory cgroup, limit, usage
  reclaim                 = true       # reclaim stall histograms per cgroup (direct and memcg)
  page_faults {
    period = 1                         # count every fault; 100 = one sample per 100 faults (estimates)
    stacks = false                     # true: faults by symbolized user stack too
  }
  pids                    = []         # e.g. [1234]: trace these processes' allocations
  comm                    = ["myapp"]  # and processes with this name (looked for each interval)
  max_tracked_per_process = 65536      # allocations tracked per process; more are counted, not attributed
  top_stacks              = 20         # outstanding bytes of the 20 largest stacks per process
}

sink "console" "screen" {
  inputs   = ["mem"]
  encoding = "json"
}
