# source "tcp": TCP connections, connect latency, RTT, retransmits, resets
# and drops per process, role, service port and peer, counted in the kernel
# with eBPF tracepoints (needs root, or CAP_BPF + CAP_PERFMON; `sonde doctor`
# checks). Values are running totals.
#   sonde run --config configs/examples/tcp.hcl
source "tcp" "tcp" {
  interval       = "10s"   # how often the counters and histograms are emitted
  peer_addresses = true    # one series per peer address; false: per process and port
  drop_reasons   = true    # sonde_tcp_drops_total by kernel drop reason (5.17+)
  max_series     = 8192    # kernel map of (process, role, port, peer) series
  max_sockets    = 65536   # kernel LRU map of live sockets and their owners
}

sink "console" "screen" {
  inputs   = ["tcp"]
  encoding = "json"
}
