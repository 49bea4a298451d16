//! Operating a running agent (issue 22): `sonde tap`, `sonde top`, the
//! graph page, and the token that guards the API off loopback. Each test
//! runs the real `sonde` binary with a demo source, whose sequence numbers
//! say exactly what should be seen.

#[path = "../common/mod.rs"]
mod common;
mod page;
mod tap;
mod token;
mod top;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, http_get, sonde, wait_for};

/// A `sonde run` of a config, stopped (SIGTERM) when dropped.
pub struct Agent {
    child: Child,
    /// The API's port.
    pub api: u16,
    /// The API's host.
    pub host: String,
    /// Its folder: the config, its log, sockets.
    pub dir: tempfile::TempDir,
}

impl Agent {
    /// Runs `config`, in which `{api}` is replaced by a free port and
    /// `{dir}` by the agent's folder, and waits for `/health`.
    pub fn start(config: &str) -> Agent {
        Agent::start_with(config, &[], "127.0.0.1")
    }

    /// [`Agent::start`] with `files` (name, text) written to its folder
    /// first, and its API on `host`.
    pub fn start_with(config: &str, files: &[(&str, &str)], host: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let api = free_port();
        let text = config
            .replace("{api}", &api.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("pipeline.hcl");
        std::fs::write(&path, text).unwrap();
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let child = sonde()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut agent = Agent {
            child,
            api,
            host: host.to_string(),
            dir,
        };
        let ready = (0..400).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            get(&agent.address(), "/health", None).starts_with("HTTP/1.1 200")
        });
        if !ready {
            let _ = agent.child.kill();
            panic!("the agent did not come up:\n{}", agent.log());
        }
        agent
    }

    /// `HOST:PORT`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.api)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// A path in its folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `/stats` as JSON.
    pub fn stats(&self) -> serde_json::Value {
        let response = http_get(self.api, "/stats").expect("the agent answers");
        serde_json::from_str(body(&response)).unwrap_or_else(|e| panic!("{e}: {response}"))
    }

    /// A component's `sent_events` in `/stats`.
    pub fn sent(&self, id: &str) -> u64 {
        component(&self.stats(), id)["sent_events"].as_u64().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM: the agent drains and removes its socket.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// `GET path` at `address` with `token`: the head of the response and
/// the start of its body (a tap streams, so no more is read).
pub fn get(address: &str, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return String::new();
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    if write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .is_err()
    {
        return String::new();
    }
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// The body of an HTTP response.
pub fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// One component of `/stats`.
pub fn component<'a>(stats: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    stats["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no component {id} in {stats}"))
}

/// The demo log sequence numbers in JSON lines.
pub fn sequences(lines: &str) -> Vec<u64> {
    lines
        .lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            event["fields"]["sequence"]
                .as_u64()
                .unwrap_or_else(|| panic!("no sequence: {line}"))
        })
        .collect()
}

/// Asserts `seq` is `n` numbers, each one more than the last.
pub fn assert_consecutive(seq: &[u64], n: usize) {
    assert_eq!(seq.len(), n, "{seq:?}");
    for pair in seq.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a gap or a repeat in {seq:?}");
    }
}

/// Waits for `path` to exist.
pub fn wait_for_file(path: &Path) {
    wait_for(&format!("{}", path.display()), Duration::from_secs(10), || {
        path.exists()
    });
}
