# transform "tag": add, rename and remove attributes.
source "demo" "generator" {
  rate = 2
}

transform "tag" "labels" {
  inputs = ["generator"]
  add    = { environment = env("SONDE_ENV", "dev"), team = "storage" }
  rename = { series = "stream" }
  remove = ["k8s.node.name"]
}

sink "console" "screen" {
  inputs   = ["labels"]
  encoding = "text"
}
