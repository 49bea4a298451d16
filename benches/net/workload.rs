//! The workload of `cargo xtask bench net`: nginx (Debian's) serving a
//! small file on loopback, driven by wrk, with keep-alive connections or a
//! new connection per request (`Connection: close`, which exercises the
//! connection tracepoints on every request).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The file nginx serves: a typical small static page.
const PAGE_BYTES: usize = 612;

/// How wrk connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    /// One connection per wrk connection slot, reused for every request.
    KeepAlive,
    /// A new TCP connection per request.
    PerRequest,
}

impl Connections {
    /// Both, in report order.
    pub const ALL: [Connections; 2] = [Connections::KeepAlive, Connections::PerRequest];

    /// How the report names it.
    pub const fn label(self) -> &'static str {
        match self {
            Connections::KeepAlive => "keep-alive",
            Connections::PerRequest => "connection per request",
        }
    }
}

/// One wrk run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    /// Requests per second.
    pub rps: f64,
    /// 99th percentile of request latency, seconds (wrk's `--latency`);
    /// the agent benchmark reports it.
    #[allow(dead_code)]
    pub p99: f64,
    /// On-CPU seconds of the nginx worker and of wrk per request: what a
    /// request costs, whatever else the machine is doing.
    pub cpu_per_request: f64,
}

/// nginx running in the foreground from a config of its own; stopped on drop.
pub struct Nginx {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    _dir: TempDir,
}

impl Nginx {
    /// Starts nginx with one worker on a free loopback port.
    pub fn start() -> Result<Nginx> {
        let dir = TempDir::new("sonde-bench-nginx")?;
        let port = free_port()?;
        std::fs::create_dir_all(dir.0.join("www"))?;
        std::fs::write(dir.0.join("www/index.html"), vec![b'x'; PAGE_BYTES])?;
        let conf = format!(
            "user root;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  keepalive_requests 100000000;\n\
             client_body_temp_path {p}/tmp; proxy_temp_path {p}/tmp; fastcgi_temp_path {p}/tmp;\n\
             uwsgi_temp_path {p}/tmp; scgi_temp_path {p}/tmp;\n\
             server {{ listen 127.0.0.1:{port} backlog=4096 reuseport; root {p}/www; }}\n}}\n",
            p = dir.0.display()
        );
        std::fs::write(dir.0.join("nginx.conf"), conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(dir.0.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start nginx (apt-get install -y nginx)")?;
        let nginx = Nginx { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not start listening on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of the master and its worker.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// On-CPU time of its worker so far, ns (`/proc/PID/schedstat`).
    fn worker_cpu_ns(&self) -> Result<u64> {
        let master = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))?;
        let worker = children.split_whitespace().next().context("nginx has no worker")?;
        let stat = std::fs::read_to_string(format!("/proc/{worker}/schedstat"))?;
        stat.split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .context("unreadable schedstat")
    }
}

/// On-CPU time of the children this process waited for, ns.
fn children_cpu_ns() -> u64 {
    // SAFETY: rusage is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// Runs wrk against nginx for `seconds`.
pub fn wrk(nginx: &Nginx, connections: Connections, seconds: u32) -> Result<Run> {
    let port = nginx.port;
    let (nginx_before, wrk_before) = (nginx.worker_cpu_ns()?, children_cpu_ns());
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "1", "-c", "32", "--latency", "-d", &format!("{seconds}s")]);
    if connections == Connections::PerRequest {
        cmd.args(["-H", "Connection: close"]);
    }
    let output = cmd
        .arg(format!("http://127.0.0.1:{port}/index.html"))
        .output()
        .context("cannot run wrk (apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    }
    if text.contains("Non-2xx") {
        bail!("nginx answered errors:\n{text}");
    }
    let cpu_ns = (nginx.worker_cpu_ns()? - nginx_before) + (children_cpu_ns() - wrk_before);
    let rps = parse_requests_per_second(&text).with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let requests = parse_requests(&text).with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    let p99 = parse_p99(&text).with_context(|| format!("no 99% latency in wrk's output:\n{text}"))?;
    Ok(Run {
        rps,
        p99,
        cpu_per_request: cpu_ns as f64 / 1e9 / requests.max(1.0),
    })
}

/// The `N requests in` figure of wrk's report.
pub fn parse_requests(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
}

/// The 99 % line of wrk's latency distribution, in seconds.
pub fn parse_p99(text: &str) -> Option<f64> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix("99%"))?.trim();
    let split = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(split);
    let scale = match unit {
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// The `Requests/sec:` figure of wrk's report.
pub fn parse_requests_per_second(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new, empty directory under the system's temporary directory.
    pub fn new(prefix: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("tmp"))?;
        Ok(TempDir(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// Run by tests/bench_net.rs. Cargo also compiles bench targets with
// `--cfg test` but without libtest, which drops the #[test] functions and
// would leave the import unused.
#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn reads_wrk_requests_per_second() {
        let text = "Running 5s test @ http://127.0.0.1:8080/\n  1 threads and 32 connections\n\
                    Requests/sec:  41234.56\nTransfer/sec:      8.1MB\n";
        assert_eq!(parse_requests_per_second(text), Some(41234.56));
        assert_eq!(parse_requests_per_second("nothing"), None);
        let latency = "  Latency Distribution\n     50%  310.00us\n     99%    2.41ms\n";
        assert!((parse_p99(latency).unwrap() - 2.41e-3).abs() < 1e-12);
        assert!((parse_p99("     99%  812.00us\n").unwrap() - 812e-6).abs() < 1e-12);
        assert_eq!(parse_p99("     99%  nonsense\n"), None);
        assert_eq!(
            parse_requests("  164938 requests in 4.00s, 128.2MB read\n"),
            Some(164938.0)
        );
    }
}
