# sink "prometheus": a demo gauge and the agent's own metrics, scraped on
# http://127.0.0.1:9464/metrics. A Prometheus scrape job for it:
#   scrape_configs:
#     - job_name: sonde
#       static_configs: [{ targets: ["127.0.0.1:9464"] }]
source "demo" "generator" {
  rate   = 10
  series = 4
}

source "internal_metrics" "agent" {
  interval = "10s"
}

sink "prometheus" "metrics" {
  inputs         = ["generator", "agent"]
  listen         = "127.0.0.1:9464"
  expire_after   = "5m"
  max_series     = 100000
  label_denylist = ["process.pid"]
}

# Pushing instead, to a Prometheus started with
# --web.enable-remote-write-receiver (or Mimir, Thanos, VictoriaMetrics):
#
# sink "prometheus" "push" {
#   inputs       = ["generator", "agent"]
#   mode         = "remote_write"
#   endpoint     = "http://prometheus:9090/api/v1/write"
#   bearer_token = env("PROMETHEUS_TOKEN")
#   headers      = { "X-Scope-OrgID" = "team-a" }
#   buffer  { when_full = "block" }     # an outage costs latency, not samples
#   request { retry_max_backoff = "10s" }
# }
