# source "energy": node energy (RAPL when the CPU has it, NVIDIA GPUs through
# NVML when present, otherwise a CPU power model driven by /proc/stat), and
# each process' share of it by its on-CPU time, measured in the kernel with
# eBPF (needs root, or CAP_BPF + CAP_PERFMON; `sonde doctor` checks).
#   sonde run --config configs/examples/energy.hcl
source "energy" "power" {
  interval           = "10s"    # how often energy is attributed and emitted
  sysfs_root         = "/sys"   # RAPL zones under <sysfs_root>/class/powercap
  procfs_root        = "/proc"  # /proc/stat drives the model; /proc/PID for exits
  idle_watts_per_cpu = 0.74     # the model, when there is no RAPL (CCF AWS averages)
  max_watts_per_cpu  = 3.5
  gpu                = true     # NVML, when libnvidia-ml and a GPU are present
}

transform "pod_enrich" "k8s" {
  inputs = ["power"]
}

sink "console" "screen" {
  inputs   = ["k8s"]
  encoding = "json"
}
