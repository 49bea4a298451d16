# source "protocols" for HTTP/2 and gRPC: every HTTP/2 stream (h2c with prior
# knowledge or `Upgrade: h2c`, and HTTPS with ALPN h2 through OpenSSL,
# Node's bundled one included) as one span, gRPC calls with `rpc.service`,
# `rpc.method`, `rpc.grpc.status_code` and message counts; RED metrics
# (`http.server.request.duration`, `rpc.server.call.duration` in s …) on a
# Prometheus endpoint (needs root, or CAP_BPF + CAP_PERFMON +
# CAP_SYS_PTRACE; `sonde doctor` checks).
#   sonde run --config configs/examples/protocols_grpc.hcl
#   curl -s http://localhost:9466/metrics | grep rpc_server_call_duration
source "protocols" "grpc" {
  protocols = ["http", "http2"]
  # HTTP/2 writes several streams' frames in one call: a frame header past
  # the bytes copied loses the framing until the next call. Copy more for
  # services with large messages.
  capture_bytes = 16384
  ports         = []              # e.g. [50051, 8443]; empty = all
  headers       = ["user-agent", "content-type"]
}

transform "filter" "only_spans" {
  inputs = ["grpc"]
  kinds  = ["span"]
}

sink "file" "calls" {
  inputs = ["only_spans"]
  path   = "/tmp/sonde-example/calls.jsonl"
}

transform "filter" "only_metrics" {
  inputs = ["grpc"]
  kinds  = ["metric"]
}

sink "prometheus" "durations" {
  inputs = ["only_metrics"]
  listen = "127.0.0.1:9466"
}
