# source "runqueue": run-queue latency (woken or preempted → running) and
# context switches, counted in the kernel with eBPF at the scheduler
# tracepoints (needs root, or CAP_BPF + CAP_PERFMON; `sonde doctor`
# checks). Histograms per cgroup, and per process when asked.
#   sonde run --config configs/examples/runqueue.hcl
source "runqueue" "sched" {
  interval      = "10s"
  per_process   = true     # also sonde.process.runqueue.latency and process.context_switches
  max_processes = 4096     # processes tracked in the kernel; more count in their cgroup only
  cgroups       = []       # e.g. ["/system.slice"]: only tasks in these cgroup v2 subtrees
  pids          = []       # e.g. [1234]: only these processes
}

sink "prometheus" "metrics" {
  inputs = ["sched"]
  listen = "127.0.0.1:9464"
}
