# source "protocols": every HTTP/1.x request on the node (plain and through
# OpenSSL TLS) as spans and RED metrics, from syscall tracepoints and uprobes
# (needs root, or CAP_BPF + CAP_PERFMON + CAP_SYS_PTRACE; `sonde doctor`
# checks). Spans as JSON lines in a file, metrics on a Prometheus endpoint.
#   sonde run --config configs/examples/protocols.hcl
#   curl -s http://localhost:9464/metrics | grep http_server_request_duration
source "protocols" "l7" {
  protocols     = ["http"]
  capture_bytes = 4096                             # bytes copied per read/write
  ports         = []                               # e.g. [80, 443, 8080]; empty = all
  exclude_comm  = []                               # e.g. ["sshd"]
  headers       = ["user-agent", "content-type"]   # never authorization/cookie
  routes        = ["/api/users/{id}"]              # http.route templates
  bodies        = { max_bytes = 0, content_types = ["application/json"] }
  interval      = "10s"                            # metrics emission
}

# Spans only, to a file.
transform "filter" "only_spans" {
  inputs = ["l7"]
  kinds  = ["span"]
}

sink "file" "spans" {
  inputs = ["only_spans"]
  path   = "/tmp/sonde-example/spans.jsonl"
}

transform "filter" "only_metrics" {
  inputs = ["l7"]
  kinds  = ["metric"]
}

sink "prometheus" "red" {
  inputs = ["only_metrics"]
  listen = "127.0.0.1:9464"
}
