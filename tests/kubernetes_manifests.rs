//! configs/kubernetes: the manifests are valid Kubernetes objects (schema
//! validation offline with kubernetes-validate, and typed parsing with
//! k8s-openapi), carry what an eBPF DaemonSet needs, and their pipeline
//! is a valid sonde config.

mod common;

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Deserialize;

const KUBERNETES_VERSION: &str = "1.33.0";

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/kubernetes");
    vec![dir.join("sonde.yaml"), dir.join("sonde-privileged.yaml")]
}

fn documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn object<T: serde::de::DeserializeOwned>(docs: &[serde_yaml::Value], kind: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"));
    serde_yaml::from_value(doc.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

#[test]
fn manifests_pass_schema_validation_offline() {
    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/venv/bin/kubernetes-validate");
    if !validator.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} is missing: `cargo xtask test` installs it",
            validator.display()
        );
        eprintln!(
            "skipped: {} missing (cargo xtask test installs it)",
            validator.display()
        );
        return;
    }
    for path in manifests() {
        let output = std::process::Command::new(&validator)
            .args(["--strict", "-k", KUBERNETES_VERSION])
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{}:\n{text}", path.display());
        assert_eq!(text.matches("passed").count(), 6, "{text}");
    }
}

#[test]
fn manifests_hold_what_the_agent_needs() {
    for path in manifests() {
        let docs = documents(&path);
        let _: Namespace = object(&docs, "Namespace");
        let _: ServiceAccount = object(&docs, "ServiceAccount");
        let _: ClusterRoleBinding = object(&docs, "ClusterRoleBinding");
        let role: ClusterRole = object(&docs, "ClusterRole");
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1, "pods only");
        assert_eq!(rules[0].resources.as_deref(), Some(&["pods".to_string()][..]));
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);

        let ds: DaemonSet = object(&docs, "DaemonSet");
        let pod = ds.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.host_pid, Some(true));
        assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
        assert!(pod
            .tolerations
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists")));
        let container = &pod.containers[0];
        let node_name = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == "NODE_NAME")
            .unwrap();
        let field = node_name.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(field.field_path, "spec.nodeName");
        for probe in [&container.liveness_probe, &container.readiness_probe] {
            let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(get.path.as_deref(), Some("/health"));
        }
        let resources = container.resources.as_ref().unwrap();
        assert!(resources.requests.is_some() && resources.limits.is_some());
        let mounts: Vec<&str> = container
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        for needed in [
            "/host/proc",
            "/sys/fs/bpf",
            "/sys/kernel/tracing",
            "/sys/kernel/debug",
            "/etc/sonde",
            "/etc/sonde-token",
            "/run/sonde",
        ] {
            assert!(mounts.contains(&needed), "{} lacks {needed}", path.display());
        }
        // The API is on the pod IP: its token comes from a Secret.
        let token = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "api-token")
            .and_then(|v| v.secret.as_ref())
            .and_then(|s| s.secret_name.clone());
        assert_eq!(token.as_deref(), Some("sonde-api-token"), "{}", path.display());

        // The pipeline in the ConfigMap is a valid sonde config.
        let config: ConfigMap = object(&docs, "ConfigMap");
        let pipeline = &config.data.unwrap()["pipeline.hcl"];
        std::env::set_var("NODE_NAME", "node-a");
        let loaded = sonde_core::config::load_str("pipeline.hcl", pipeline, &common::registry())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            loaded.config.agent.api_token_file.as_deref(),
            Some(Path::new("/etc/sonde-token/token"))
        );
    }
}

#[test]
fn the_two_variants_differ_only_in_privileges() {
    let [capabilities, privileged] = [0, 1].map(|i| documents(&manifests()[i]));
    assert_eq!(capabilities.len(), privileged.len());
    for (a, b) in capabilities.iter().zip(&privileged) {
        if a["kind"].as_str() != Some("DaemonSet") {
            assert_eq!(a, b);
            continue;
        }
        let strip = |d: &serde_yaml::Value| {
            let mut d = d.clone();
            let c = &mut d["spec"]["template"]["spec"]["containers"][0];
            c["securityContext"] = serde_yaml::Value::Null;
            for m in c["volumeMounts"].as_sequence_mut().unwrap() {
                m.as_mapping_mut().unwrap().remove("mountPropagation");
            }
            d
        };
        assert_eq!(strip(a), strip(b));
        let sc = |d: &serde_yaml::Value| d["spec"]["template"]["spec"]["containers"][0]["securityContext"].clone();
        assert_eq!(sc(b)["privileged"], true);
        let restricted = sc(a);
        let added: Vec<&str> = restricted["capabilities"]["add"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            added,
            [
                "BPF",
                "PERFMON",
                "SYS_RESOURCE",
                "SYS_PTRACE",
                "DAC_READ_SEARCH",
                "NET_ADMIN",
                "SYSLOG"
            ]
        );
        assert_eq!(restricted["capabilities"]["drop"][0], "ALL");
    }
}
