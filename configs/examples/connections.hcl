# source "connections": an audit of who talked to what on the network —
# outbound connects, inbound accepts and new listeners, IPv4 and IPv6 —
# filtered in the kernel (needs root, or CAP_BPF + CAP_PERFMON +
# CAP_DAC_READ_SEARCH + CAP_SYS_PTRACE; `sonde doctor` checks). Each event
# is a `network.connect`, `network.accept` or `network.listen` log record
# with the process (pid, name, executable, cgroup, user), its
# `sonde.process.exec_id` and parent chain, and both endpoints
# (`source.*` = initiator, `destination.*` = responder). Events left out
# are only counted (sonde_connections_dropped_total{reason}).
#   sonde run --config configs/examples/connections.hcl
# Optional: with a process source in the same agent, connections name
# processes by the exec ids of its process.exec records.
source "process" "procs" {}

source "connections" "egress" {
  directions = ["connect", "accept", "listen"]
  protocols  = ["tcp"]              # add "udp" for connect() of UDP sockets
  match {
    cidr         = []               # peers reported, e.g. ["10.0.0.0/8", "fd00::/8"]; empty = any
    exclude_cidr = ["127.0.0.0/8", "::1/128"]   # loopback left out (counted as reason="cidr")
    port         = []               # service ports: a connect's remote, an accept's or listener's local
    binary       = []               # process names (comm); empty = any
    cgroup       = []               # cgroup v2 paths, e.g. "/system.slice/nginx.service"
  }
  failed         = true             # report refused/unreachable connects with error.type
  dedup_window   = "10s"            # a process reconnecting to the same peer and port: once per 10 s
  rate_limit     = 1000             # events a second per cgroup, in the kernel; 0 = no limit
  ancestry_depth = 8
}

transform "pod_enrich" "pods" {
  inputs = ["egress", "procs"]
}

sink "console" "screen" {
  inputs   = ["pods"]
  encoding = "json"
}
