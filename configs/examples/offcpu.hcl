# source "offcpu": where threads wait and for how long (sleeping, blocked in
# the kernel, preempted), with user and kernel stacks, sampled at the
# scheduler's sched_switch and aggregated in the kernel with eBPF (needs
# root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE + CAP_SYSLOG).
# Profiles of type off_cpu/nanoseconds, already scaled by 1/probability:
# any profile sink takes them (flame graphs read in µs).
#   sonde run --config configs/examples/offcpu.hcl
source "offcpu" "waits" {
  probability  = 0.01     # one switch-out in 100 per thread sampled (and counted ×100)
  min_block_us = 10       # drop waits shorter than 10 µs
  interval     = "15s"
  comms        = []       # e.g. ["postgres*"]: only these processes
}

sink "file" "flame" {
  inputs = ["waits"]
  path   = "/tmp/sonde-offcpu"
  format = "flamegraph"
}
