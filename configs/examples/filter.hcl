# transform "filter": keep only the demo events of series "1".
source "demo" "generator" {
  rate   = 10
  series = 3
}

transform "filter" "series_one" {
  inputs     = ["generator"]
  action     = "keep"
  kinds      = ["metric"]
  attributes = { series = "1" }
}

sink "console" "screen" {
  inputs   = ["series_one"]
  encoding = "text"
}
