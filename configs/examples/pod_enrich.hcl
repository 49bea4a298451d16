# transform "pod_enrich": which process, container and pod each event is from.
#
# Events need a `process.pid` (eBPF sources add it); here the agent's own
# metrics pass through untouched apart from `k8s.node.name` (in Kubernetes,
# or when `node_name` is given). On a node
# (DaemonSet, configs/kubernetes/), the pod's service account is used and
# only this node's pods are watched; without Kubernetes, process and
# container attributes are still added.
source "internal_metrics" "agent" {}

transform "pod_enrich" "k8s" {
  inputs     = ["agent"]
  # node_name = env("NODE_NAME")     # default: the agent's node name
  proc_root  = "/proc"                # "/host/proc" in a pod
  kubernetes = "auto"                 # "required" | "disabled"
  labels     = ["app.kubernetes.io/name", "app"]
  annotations = []
  max_processes        = 16384
  pid_recheck_interval = "1s"
}

sink "console" "screen" {
  inputs   = ["k8s"]
  encoding = "text"
}
