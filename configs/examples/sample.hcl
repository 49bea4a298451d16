# transform "sample": keep 10 % of flows, whole, and at most 100 events per
# second per flow; errors and 5xx responses are always kept.
source "demo" "flows" {
  rate   = 50
  kind   = "log"
  series = 20
}

transform "sample" "flows_10pct" {
  inputs         = ["flows"]
  rate           = 0.1
  key            = ["series"]           # e.g. ["process.pid", "remote_addr"] for network flows
  max_per_second = 100
  kinds          = ["log", "span"]      # metrics and profiles pass through
  keep_errors    = true
  always_keep    = { "http.response.status_code" = ["500", "503"] }
}

sink "console" "screen" {
  inputs   = ["flows_10pct"]
  encoding = "text"
}
