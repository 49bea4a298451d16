//! Go's `crypto/tls` in the protocols benchmark: a Go HTTPS client
//! (tests/workload/gotls, `load`) at a fixed rate on keep-alive
//! connections to a Go HTTPS server, both traced through the Go TLS
//! probes. Built offline with Debian's `golang-go`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// The rate and connections of the Go client.
pub const RPS: u32 = 1_000;
pub const CONNECTIONS: u32 = 10;

/// The Go HTTPS server, running, and the binary (its client too).
pub struct GoTls {
    server: Child,
    pub binary: PathBuf,
    pub port: u16,
}

impl GoTls {
    /// Builds the workload into `dir` and starts its server.
    pub fn start(dir: &Path) -> Result<GoTls> {
        let binary = dir.join("gotls");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/gotls");
        let out = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(&source)
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "")
            .env("GO111MODULE", "off")
            .env("GOCACHE", dir.join("gocache"))
            .env("CGO_ENABLED", "0")
            .output()
            .context("go (apt-get install golang-go)")?;
        if !out.status.success() {
            bail!("go build: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut server = Command::new(&binary)
            .arg("server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(server.stdout.take().context("server stdout")?).read_line(&mut line)?;
        let port = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the Go server said {line:?}"))?;
        Ok(GoTls { server, binary, port })
    }

    /// `seconds` of the client at [`RPS`]: the requests it completed.
    pub fn load(&self, seconds: u32) -> Result<f64> {
        let out = Command::new(&self.binary)
            .args(["load", &self.port.to_string(), &RPS.to_string()])
            .args([seconds.to_string(), CONNECTIONS.to_string()])
            .output()?;
        if !out.status.success() {
            bail!("the Go client: {}", String::from_utf8_lossy(&out.stderr));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("requests ")?.trim().parse().ok())
            .context("the Go client's count")
    }
}

impl Drop for GoTls {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
