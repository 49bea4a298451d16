# source "protocols" into an OpenTelemetry collector: spans as traces (with
# the trace context requests carried), RED metrics as histograms, both
# enriched with the pod of each process.
#   OTLP_ENDPOINT=http://localhost:4317 sonde run --config configs/examples/protocols_otlp.hcl
source "protocols" "l7" {
  routes = ["/api/users/{id}", "/api/orders/{id}/items"]
}

transform "pod_enrich" "k8s" {
  inputs = ["l7"]
}

sink "otlp" "collector" {
  inputs   = ["k8s"]
  endpoint = env("OTLP_ENDPOINT", "http://localhost:4317")
  protocol = "grpc"
}
