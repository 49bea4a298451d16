# source "demo": synthetic events with a sequence number, printed as text.
#   sonde run --config configs/examples/demo.hcl
source "demo" "generator" {
  rate   = 5        # events per second
  count  = 20       # then stop (and sonde exits once everything is delivered)
  kind   = "log"
  series = 2
}

sink "console" "screen" {
  inputs   = ["generator"]
  encoding = "text"
}
