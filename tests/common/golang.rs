//! Go programs of tests/workload built offline with Debian's `golang-go`
//! (and, for gRPC, the packages under /usr/share/gocode): no module
//! download, no toolchain switch.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// `go build -ldflags=LDFLAGS -o DIR/NAME tests/workload/SOURCE` in GOPATH
/// mode, offline. Panics, naming the package, when Go is missing.
pub fn build(source: &str, dir: &Path, name: &str, ldflags: &str) -> PathBuf {
    let out = dir.join(name);
    let workload = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workload")
        .join(source);
    let cache = std::env::temp_dir().join("sonde-test-gocache");
    let result = Command::new("go")
        .args(["build", "-trimpath", &format!("-ldflags={ldflags}"), "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(&workload)
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", &cache)
        .env("CGO_ENABLED", "0")
        .output()
        .expect("go (apt-get install golang-go)");
    assert!(
        result.status.success(),
        "go build {source}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// `go version`'s release, e.g. `go1.19.8`.
pub fn version() -> String {
    let out = Command::new("go")
        .arg("version")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .expect("go version GO OS/ARCH")
        .to_string()
}

/// A Go server of tests/workload (gotls, gogrpc): its ports, and its own
/// counts at [`GoServer::stop`].
pub struct GoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Plain TLS connections.
    pub port: u16,
    /// Connections whose Read grows the goroutine's stack first.
    pub deep_port: u16,
}

impl GoServer {
    pub fn start(binary: &Path) -> GoServer {
        let mut child = Command::new(binary)
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("go server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ports: Vec<u16> = line
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("server said {line:?}"))
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        GoServer {
            stdin: child.stdin.take(),
            child,
            stdout,
            port: ports[0],
            deep_port: ports.get(1).copied().unwrap_or(0),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (the probes never crash it).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Stops it; returns `WHAT COUNT` of what it served (`WHAT` is a path
    /// for gotls, `METHOD CODE` for gogrpc).
    pub fn stop(mut self) -> Vec<(String, usize)> {
        drop(self.stdin.take());
        let mut counts = Vec::new();
        for line in (&mut self.stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("served ") {
                let (path, n) = rest.rsplit_once(' ').unwrap();
                counts.push((path.to_string(), n.parse().unwrap()));
            }
        }
        assert!(self.child.wait().unwrap().success(), "the Go server failed");
        counts
    }
}

impl Drop for GoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the Go client: `n` requests per path (gotls) or calls of each kind
/// (gogrpc) on one connection to `port`; returns its own `WHAT COUNT` of
/// what it completed.
pub fn client(binary: &Path, port: u16, n: usize, paths: &[&str]) -> Vec<(String, usize)> {
    let out = Command::new(binary)
        .args(["client", &port.to_string(), &n.to_string()])
        .args(paths)
        .output()
        .expect("go client");
    assert!(
        out.status.success(),
        "go client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::io::stderr().write_all(&out.stderr);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("done "))
        .map(|rest| {
            let (path, n) = rest.rsplit_once(' ').unwrap();
            (path.to_string(), n.parse().unwrap())
        })
        .collect()
}
