# A disk-buffered OTLP sink: what the agent took survives a crash or a
# restart (kept in /var/lib/sonde/out/) and is delivered at least once.
#
#   sonde run --config configs/examples/disk_buffer.hcl
#   sonde buffer check /var/lib/sonde/out    # offline, agent stopped
agent {
  data_dir = "/var/lib/sonde"
}

source "demo" "gen" {
  rate = 1000
}

sink "otlp" "out" {
  inputs   = ["gen"]
  endpoint = "http://127.0.0.1:4317"
  buffer {
    type      = "disk"
    max_size  = "256MiB"
    when_full = "block"
  }
}
