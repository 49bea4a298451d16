# source "profile": CPU stack samples of every process, 99 times a second per
# CPU, symbolized in the agent (kernel, native unwound with .eh_frame tables in
# the kernel, separate debug info, JIT via perf maps, CPython 3.8-3.13
# frames), as a pprof file, folded stacks and a flame graph per interval.
# Needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE; `sonde doctor` checks.
#   sonde run --config configs/examples/profile.hcl
source "profile" "cpu" {
  frequency_hz = 99          # samples per second per CPU
  interval     = "15s"       # one profile per process per interval
  include_idle = false       # true: also the idle task (pid 0)
  event        = "cpu_clock" # or "cycles" (needs a PMU), "auto"
  pids         = []          # e.g. [1234]; empty = every process
  cgroups      = []          # e.g. ["/kubepods.slice"]: these cgroups and below
  comms        = []          # e.g. ["postgres*", "nginx"]
  max_stacks   = 2048        # distinct kernel (and not yet unwound user) stacks per interval, 2 x 1 KiB each
  line_numbers = false       # true: file:line from DWARF (costs CPU and memory per binary)
  native_unwinding = true    # walk user stacks with .eh_frame tables (x86-64); false: frame pointers only
  unwind_table_mib = 8       # kernel memory for unwind tables; least recently used evicted when full
  # With these defaults the BPF maps take 31.7 MiB of kernel memory (README: profile, Memory).
  # Debug files of stripped binaries missing under /usr/lib/debug, fetched
  # once and cached; empty (the default) never touches the network.
  debuginfod_urls  = []      # e.g. ["https://debuginfod.debian.net"]
  debuginfod_cache = "/var/cache/sonde/debuginfod"
}

sink "file" "pprof" {
  inputs    = ["cpu"]
  path      = "/tmp/sonde/profiles"   # profile-<start>.pb.gz, profile-latest.pb.gz
  format    = "pprof"                 # `go tool pprof -http : FILE`
  max_files = 40
}

sink "file" "folded" {
  inputs    = ["cpu"]
  path      = "/tmp/sonde/profiles"   # stacks-<start>.folded
  format    = "folded"
  max_files = 40
}

sink "file" "flamegraph" {
  inputs    = ["cpu"]
  path      = "/tmp/sonde/profiles"   # flamegraph-<start>.svg, flamegraph-latest.svg
  format    = "flamegraph"
  max_files = 40
}
