# source "file_io": file I/O per process and file — bytes, calls, failures
# and latency histograms of reads, writes and syncs of regular files,
# counted in the kernel from syscall tracepoints (needs root, or CAP_BPF +
# CAP_PERFMON + CAP_SYS_PTRACE; `sonde doctor` checks). Not seen: mmap'd
# I/O, io_uring, POSIX AIO, sendfile/splice/copy_file_range.
#   sonde run --config configs/examples/file_io.hcl
source "file_io" "files" {
  interval  = "10s"
  top_files = 100    # (process, file) pairs reported by path; each process' rest under file.path="[other]"
  max_files = 4096   # pairs tracked in the kernel at once (idle ones outside the top leave each interval)
  pids      = []     # e.g. [1234]: only these processes (filtered in the kernel)
}

sink "prometheus" "metrics" {
  inputs  = ["files"]
  listen  = "127.0.0.1:9464"
}
