# source "protocols" for databases and DNS: every PostgreSQL and MySQL/MariaDB
# statement, Redis command and DNS query on the node (plain and through
# OpenSSL TLS) as spans, with `db.client.operation.duration` and
# `dns.lookup.duration` on a Prometheus endpoint. Literals in SQL become `?`,
# Redis keeps only the command and its first key (needs root, or CAP_BPF +
# CAP_PERFMON + CAP_SYS_PTRACE; `sonde doctor` checks).
#   sonde run --config configs/examples/protocols_databases.hcl
#   curl -s http://localhost:9465/metrics | grep db_client_operation_duration
source "protocols" "db" {
  protocols = ["postgresql", "mysql", "redis", "dns"]
  ports     = []                  # e.g. [5432, 3306, 6379, 53]; empty = all
  dns_ports = [53]                # where DNS servers listen (at most 4)
  queries = {
    obfuscate  = true             # literals become ?
    max_length = 2048             # longer statements are cut and marked
    redis_keys = true             # keep `GET user:42`'s key, nothing else
  }
}

transform "filter" "only_spans" {
  inputs = ["db"]
  kinds  = ["span"]
}

sink "file" "statements" {
  inputs = ["only_spans"]
  path   = "/tmp/sonde-example/statements.jsonl"
}

transform "filter" "only_metrics" {
  inputs = ["db"]
  kinds  = ["metric"]
}

sink "prometheus" "durations" {
  inputs = ["only_metrics"]
  listen = "127.0.0.1:9465"
}
