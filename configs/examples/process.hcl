# source "process": every exec and process exit on the node, each with its
# parent chain and a stable exec id, from the sched_process_* tracepoints
# (needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE; `sonde doctor`
# checks). Filters and the rate limit act in the kernel; what they drop is
# counted (sonde_ebpf_lost_events_total{reason="filtered"|"throttled"}).
#   sonde run --config configs/examples/process.hcl
source "process" "procs" {
  fork              = false        # also a process.fork event per new process
  ancestry_depth    = 8            # ancestors in sonde.process.ancestry
  max_args_bytes    = 4096         # argv kept per exec (a byte-exact prefix beyond)
  cgroups           = []           # e.g. ["kubepods.slice"]: only these cgroups and below
  exclude_binaries  = ["sonde"]    # never these process names (first 15 bytes)
  rate_limit        = 200          # execs per second per cgroup; 0: no limit
  interval          = "10s"        # sonde_process_execs_total per binary and cgroup
}

transform "pod_enrich" "k8s" {
  inputs = ["procs"]
}

sink "console" "screen" {
  inputs   = ["k8s"]
  encoding = "json"
}
