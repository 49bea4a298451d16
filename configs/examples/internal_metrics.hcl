# source "internal_metrics": sonde's own counters as events, every 5 seconds.
source "internal_metrics" "agent" {
  interval = "5s"
}

sink "console" "screen" {
  inputs   = ["agent"]
  encoding = "text"
}
