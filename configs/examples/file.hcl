# sink "file": JSON lines, rotated at 10 MiB, 3 old files kept.
source "demo" "generator" {
  rate = 100
  kind = "log"
}

sink "file" "archive" {
  inputs    = ["generator"]
  path      = "/tmp/sonde-example/events.jsonl"
  max_bytes = 10485760
  max_files = 3

  buffer {
    max_events = 50000
    when_full  = "block"
  }
}
