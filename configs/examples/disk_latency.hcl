# source "disk_latency": block I/O latency, queue time and request sizes per
# disk and operation, and queue depth per disk, measured in the kernel with
# eBPF (needs root, or CAP_BPF + CAP_PERFMON; `sonde doctor` checks).
# Histograms and counters are running totals; the queue depth (mean and
# max) is per interval.
#   sonde run --config configs/examples/disk_latency.hcl
source "disk_latency" "disk" {
  interval   = "10s"     # how often the histograms are emitted
  queue_time = true      # also time insert -> issue (I/O scheduler wait)
  queue_depth = true     # requests in the scheduler / at the device: mean and max per interval
  devices    = []        # e.g. ["vda", "nvme0n1"]; empty = every disk
}

sink "console" "screen" {
  inputs   = ["disk"]
  encoding = "json"
}
