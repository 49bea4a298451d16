//! `sonde doctor` on this machine, through the real binary: as root every
//! eBPF source loads; with capabilities dropped (`capsh --drop`), it names
//! the missing capability and exits non-zero.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF (or has no
//! capsh) fails these tests; without it they print why and pass.

use std::process::{Command, Output};

use serde_json::Value;
use sonde_ebpf::testing::{bpf_available_or_skip, skip_or_fail};

const DROPPED: &str = "cap_bpf,cap_perfmon,cap_sys_admin";

fn sonde() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sonde"))
}

/// `sonde <args>` with `DROPPED` removed from its capabilities, or `None`
/// (after skip_or_fail) when capsh is missing.
fn sonde_without_caps(test: &str, args: &str) -> Option<Output> {
    sonde_without(test, DROPPED, args)
}

/// `sonde <args>` with the capabilities `dropped` (capsh's list) removed.
fn sonde_without(test: &str, dropped: &str, args: &str) -> Option<Output> {
    let output = Command::new("capsh")
        .arg(format!("--drop={dropped}"))
        .args(["--", "-c"])
        .arg(format!("exec \"$0\" {args}"))
        .arg(env!("CARGO_BIN_EXE_sonde"))
        .output();
    match output {
        Ok(output) => Some(output),
        Err(error) => {
            skip_or_fail(
                test,
                &format!("cannot run capsh (apt-get install libcap2-bin): {error}"),
            );
            None
        }
    }
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn source<'a>(report: &'a Value, type_name: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == type_name)
        .unwrap_or_else(|| panic!("no {type_name} in {report:#}"))
}

#[test]
fn as_root_every_source_can_run() {
    if !bpf_available_or_skip("as_root_every_source_can_run") {
        return;
    }
    let output = sonde().args(["doctor", "--json"]).output().unwrap();
    let report = report(&output);
    assert!(output.status.success(), "{report:#}");
    assert_eq!(report["ok"], true);
    let disk = source(&report, "disk_latency");
    assert_eq!(disk["ok"], true, "{disk:#}");
    assert_eq!(disk["ebpf"], true);
    assert_eq!(source(&report, "demo")["ebpf"], false);
    for check in [
        "kernel",
        "btf",
        "tracefs",
        "bpffs",
        "cgroup_v2",
        "capabilities",
        "perf_event_paranoid",
    ] {
        assert!(
            report["checks"][check]["value"].is_string(),
            "{check} missing: {report:#}"
        );
    }
    let features: Vec<&str> = report["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        features,
        ["tracepoint", "kprobe", "fentry", "uprobe", "perf_event", "ringbuf"]
    );
    assert_eq!(report["capabilities"]["BPF"], true);

    // The text report says the same.
    let text = sonde().arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("disk_latency") && l.contains("ok")),
        "{text}"
    );
    assert!(text.contains("every source can run on this node"), "{text}");
}

#[test]
fn without_capabilities_it_names_them_and_fails() {
    let test = "without_capabilities_it_names_them_and_fails";
    if !bpf_available_or_skip(test) {
        return;
    }
    let Some(output) = sonde_without_caps(test, "doctor --json") else {
        return;
    };
    let report = report(&output);
    assert!(!output.status.success(), "must exit non-zero: {report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["capabilities"]["BPF"], false);
    assert_eq!(report["capabilities"]["PERFMON"], false);
    let disk = source(&report, "disk_latency");
    assert_eq!(disk["ok"], false);
    let fix = disk["fix"].as_str().unwrap();
    assert!(fix.contains("CAP_BPF") && fix.contains("CAP_PERFMON"), "{fix}");
    assert!(fix.contains("securityContext.capabilities.add"), "{fix}");
    assert!(
        disk["reason"].as_str().unwrap().contains("Operation not permitted"),
        "{disk:#}"
    );

    let Some(text) = sonde_without_caps(test, "doctor") else {
        return;
    };
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("missing CAP_BPF and CAP_PERFMON"), "{text}");
}

#[test]
fn with_a_config_only_its_sources_count() {
    let test = "with_a_config_only_its_sources_count";
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, sources: &str| {
        let path = dir.path().join(name);
        let text = format!("{sources}\nsink \"blackhole\" \"void\" {{\n  inputs = [\"a\"]\n}}\n");
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let with_disk = write("disk.hcl", "source \"disk_latency\" \"a\" {}\nsource \"demo\" \"b\" {}");
    let demo_only = write("demo.hcl", "source \"demo\" \"a\" {}");

    let output = sonde()
        .args(["doctor", "--json", "--config", &with_disk])
        .output()
        .unwrap();
    let report = report(&output);
    assert!(output.status.success(), "{report:#}");
    let ids: Vec<&str> = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);

    // Without capabilities: the configured eBPF source cannot run …
    let Some(output) = sonde_without_caps(test, &format!("doctor --json --config {with_disk}")) else {
        return;
    };
    assert!(!output.status.success());
    assert_eq!(source(&self::report(&output), "disk_latency")["ok"], false);
    // … but a pipeline without eBPF sources can.
    let Some(output) = sonde_without_caps(test, &format!("doctor --json --config {demo_only}")) else {
        return;
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

/// Without CAP_NET_ADMIN, net_flows cannot attach its cgroup programs:
/// doctor names that capability (what the source needs, what is missing)
/// instead of blaming seccomp, an LSM or lockdown, and sources that do not
/// need it stay ok.
#[test]
fn a_missing_capability_other_than_bpf_is_named_per_source() {
    let test = "a_missing_capability_other_than_bpf_is_named_per_source";
    if !bpf_available_or_skip(test) {
        return;
    }
    let Some(output) = sonde_without(test, "cap_net_admin", "doctor --json") else {
        return;
    };
    let report = report(&output);
    assert!(!output.status.success(), "must exit non-zero: {report:#}");
    let flows = source(&report, "net_flows");
    assert_eq!(flows["ok"], false, "{flows:#}");
    assert_eq!(
        flows["missing_capabilities"],
        serde_json::json!(["NET_ADMIN"]),
        "{flows:#}"
    );
    assert!(
        flows["needs_capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "NET_ADMIN"),
        "{flows:#}"
    );
    let fix = flows["fix"].as_str().unwrap();
    assert!(fix.contains("missing CAP_NET_ADMIN"), "{fix}");
    assert!(!fix.contains("seccomp"), "{fix}");
    for other in ["disk_latency", "tcp", "demo"] {
        assert_eq!(source(&report, other)["ok"], true, "{other}: {report:#}");
    }
}

/// The README's capability table names every capability the least
/// privileged manifest adds.
#[test]
fn the_readme_names_every_capability_the_manifest_adds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let manifest = std::fs::read_to_string(root.join("configs/kubernetes/sonde.yaml")).unwrap();
    let added: Vec<&str> = manifest
        .split("add:")
        .nth(1)
        .expect("capabilities.add in the manifest")
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map_while(|l| l.strip_prefix("- "))
        .collect();
    assert!(added.len() >= 5, "{added:?}");
    for capability in added {
        assert!(
            readme.contains(&format!("| `{capability}` |")),
            "the README's capability table lacks {capability}"
        );
    }
}
