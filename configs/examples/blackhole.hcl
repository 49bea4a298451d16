# sink "blackhole": counts and discards, logging the count every 5 seconds.
source "demo" "generator" {
  rate = 0          # as fast as the pipeline goes
}

sink "blackhole" "void" {
  inputs         = ["generator"]
  print_interval = "5s"
}
