# sonde's default pipeline: runs with no outside service.
#   sonde run            (this file is built into the binary)
# Agent metrics on http://127.0.0.1:8686/metrics (agent API), disk and
# energy metrics on http://127.0.0.1:9464/metrics (the agent's own are not
# there too: scraping both would count them twice); events in /var/lib/sonde.
# A CPU flame graph of the whole node every 15s in /var/lib/sonde/profiles
# (open flamegraph-latest.svg in a browser).

agent {
  api = "127.0.0.1:8686"
}

source "internal_metrics" "agent" {
  interval = "10s"
}

source "disk_latency" "disk" {
  interval = "10s"
}

source "profile" "cpu" {
  frequency_hz = 99
  interval     = "15s"
}

sink "file" "flamegraphs" {
  inputs    = ["cpu"]
  path      = env("SONDE_PROFILES", "/var/lib/sonde/profiles")
  format    = "flamegraph"
  max_files = 20
}

# Node power and each process' share of it (RAPL, NVML or a CPU power
# model). One tracepoint program on sched_switch: about 0.5 µs per context
# switch.
source "energy" "energy" {
  interval = "10s"
}

sink "prometheus" "metrics" {
  inputs = ["disk", "energy"]
  listen = env("SONDE_PROMETHEUS_LISTEN", "127.0.0.1:9464")
}

sink "file" "events" {
  inputs    = ["agent", "disk", "energy"]
  path      = env("SONDE_OUTPUT", "/var/lib/sonde/events.jsonl")
  max_bytes = 104857600
  max_files = 5
}
