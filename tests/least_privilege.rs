//! `sonde run` keeps only the capabilities its components declare, in
//! every thread, once the pipeline is running.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn status_field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = write!(stream, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"ok\"")
}

#[test]
fn the_running_agent_keeps_only_declared_capabilities() {
    let me = std::fs::read_to_string("/proc/self/status").unwrap();
    if status_field(&me, "CapEff:") == "0000000000000000" {
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("SONDE_REQUIRE_BPF").is_none(),
            "this test needs root"
        );
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("p.hcl");
    std::fs::write(
        &config,
        format!(
            r#"
agent {{ api = "127.0.0.1:{port}" }}
source "demo" "g" {{
  rate = 100
  kind = "log"
}}
transform "pod_enrich" "k8s" {{
  inputs     = ["g"]
  kubernetes = "disabled"
}}
sink "file" "f" {{
  inputs = ["k8s"]
  path   = "{}"
}}
"#,
            dir.path().join("out.jsonl").display()
        ),
    )
    .unwrap();
    let mut child = common::sonde()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !healthy(port) {
        assert!(started.elapsed() < Duration::from_secs(20), "agent did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The drop happens right after the pipeline starts, before the API.
    let tasks = format!("/proc/{}/task", child.id());
    let mut threads = 0;
    for entry in std::fs::read_dir(&tasks).unwrap() {
        let Ok(status) = std::fs::read_to_string(entry.unwrap().path().join("status")) else {
            continue;
        };
        // pod_enrich declares SYS_PTRACE (bit 19), nothing else does.
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(status_field(&status, set), "0000000000080000", "{set}\n{status}");
        }
        assert_eq!(status_field(&status, "CapAmb:"), "0000000000000000");
        assert_eq!(status_field(&status, "NoNewPrivs:"), "1");
        threads += 1;
    }
    assert!(threads > 1, "a multi-threaded agent");
    let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert!(stderr.contains("capabilities dropped"), "{stderr}");
}
