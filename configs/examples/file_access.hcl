# source "file_access": an audit of file opens, filtered in the kernel
# (needs root, or CAP_BPF + CAP_PERFMON + CAP_DAC_READ_SEARCH; `sonde
# doctor` checks). Each open that matches is a `file.open` log record with
# the process, its cgroup and user, the file's absolute path (resolved from
# the returned fd: relative names, symlinks and directory fds are right),
# what the flags ask for, and the fd or the error. Opens left out are only
# counted (sonde_file_access_dropped_total{reason}).
#   sonde run --config configs/examples/file_access.hcl
source "file_access" "etc_writes" {
  match {
    path_prefix = ["/etc/"]             # directories (or files) watched, by identity
    flags       = ["write", "create"]   # read, write, create, truncate; empty = any
    binary      = []                    # process names (comm); empty = any
    cgroup      = []                    # cgroup v2 paths, e.g. "/system.slice/nginx.service"
  }
  failed       = true    # report failed opens (the name asked for and the errno)
  dedup_window = "1s"    # same process, file and flags again within 1 s: counted, not reported
  rate_limit   = 1000    # records per second per cgroup; the rest counted as throttled
}

sink "console" "screen" {
  inputs   = ["etc_writes"]
  encoding = "json"
}
