# source "net_flows": one `net.flow` record per TCP or UDP flow (5-tuple,
# direction, process, bytes and packets each way, RTT, retransmits) when it
# ends, and every `active_timeout` while it lasts; plus the service map,
# sonde_network_flow_io_bytes_total per process and peer. Needs root (or CAP_BPF,
# CAP_PERFMON, CAP_NET_ADMIN) and kernel 5.9+; `sonde doctor` checks.
#   sonde run --config configs/examples/net_flows.hcl
source "net_flows" "flows" {
  active_timeout        = "30s"    # interim record of a long flow every 30 s
  idle_timeout          = "15s"    # a UDP flow ends after 15 s without packets
  udp                   = true     # also count UDP (a program per packet)
  service_map           = true     # sonde_network_flow_io_bytes_total per process and peer
  interval              = "10s"    # how often the service map is emitted
  max_tcp_flows         = 65536
  max_udp_flows         = 16384
  max_service_map_edges = 10000
}

# Flow records to a file, the service map to the console.
transform "filter" "records" {
  inputs = ["flows"]
  kinds  = ["log"]
}

sink "file" "flow_log" {
  inputs = ["records"]
  path   = "/tmp/sonde/flows.jsonl"
}

transform "filter" "service_map" {
  inputs = ["flows"]
  kinds  = ["metric"]
}

sink "console" "screen" {
  inputs   = ["service_map"]
  encoding = "json"
}
