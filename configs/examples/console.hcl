# sink "console": every event as a JSON line on standard output.
source "demo" "generator" {
  rate  = 1
  count = 3
}

sink "console" "stdout" {
  inputs   = ["generator"]
  encoding = "json"
  target   = "stdout"
}
