# sink "pyroscope": CPU profiles pushed to Grafana Pyroscope (or Alloy's
# pyroscope.receive_http, or Grafana Cloud Profiles) as pprof, one series per
# application name and label set.
#   sonde run --config configs/examples/pyroscope.hcl
source "profile" "cpu" {
  frequency_hz = 99
  interval     = "15s"
}

sink "pyroscope" "profiles" {
  inputs       = ["cpu"]
  endpoint     = env("PYROSCOPE_URL", "http://127.0.0.1:4040")
  # service_name = "my-service"   # else the first attribute below a profile has
  service_name_attributes = ["service.name", "k8s.container.name", "process.executable.name"]
  exclude_labels          = ["process.pid"]   # every other attribute is a label
  # tenant_id = "team-a"          # X-Scope-OrgID of a multi-tenant Pyroscope
  # basic_auth {
  #   username = env("PYROSCOPE_USER")
  #   password = env("PYROSCOPE_TOKEN")
  # }

  request {
    timeout = "30s"
  }
}
