# sink "otlp": metrics and logs to an OpenTelemetry collector over gRPC,
# gzip-compressed, with an auth header and extra resource attributes.
source "demo" "metrics" {
  rate = 100
}

source "demo" "logs" {
  rate = 10
  kind = "log"
}

sink "otlp" "collector" {
  inputs      = ["metrics", "logs"]
  endpoint    = env("OTLP_ENDPOINT", "http://localhost:4317")
  protocol    = "grpc"            # or "http/protobuf" (port 4318)
  compression = "gzip"
  headers     = { authorization = "Bearer ${env("OTLP_TOKEN", "dev")}" }
  resource    = { "deployment.environment.name" = "dev" }

  # For https:// endpoints:
  # tls {
  #   ca_file = "/etc/sonde/ca.pem"
  # }

  buffer {
    max_events = 50000
    when_full  = "block"          # a collector outage backs up, nothing is lost
  }
  request {
    timeout = "10s"
  }
}
