//! A web server workload shared by the benchmarks: nginx (Debian's)
//! serving a small file on loopback, driven by wrk — flat out, or paced to
//! a fixed rate with wrk's Lua `delay()` hook — with the CPU time the
//! server and the client spent on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The file nginx serves: a typical small static page.
const PAGE_BYTES: usize = 612;

/// nginx running in the foreground from a config of its own; stopped on drop.
pub struct Nginx {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    dir: TempDir,
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
        let nginx = Nginx { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not start listening on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }

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

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of the master and its worker.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// How wrk loads nginx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    /// Open connections (one wrk thread drives them all).
    pub connections: u32,
    /// A new TCP connection per request (`Connection: close`) instead of
    /// keep-alive.
    pub close: bool,
    /// Pause after each response before a connection's next request, ms
    /// (wrk's Lua `delay()`): `connections / delay` requests/s at most.
    /// `None`: as fast as it goes.
    pub delay_ms: Option<u32>,
}

/// One wrk run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Run {
    /// Requests completed.
    pub requests: f64,
    /// Requests per second.
    pub rps: f64,
    /// Median and 99th percentile of request latency, seconds (wrk's
    /// `--latency`, from sending a request to its response).
    pub p50: f64,
    pub p99: f64,
    /// On-CPU seconds of the nginx worker and of wrk per request: what a
    /// request costs, whatever else the machine is doing.
    pub cpu_per_request: f64,
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
pub fn wrk(nginx: &Nginx, load: Load, seconds: u32) -> Result<Run> {
    let port = nginx.port;
    let (nginx_before, wrk_before) = (nginx.worker_cpu_ns()?, children_cpu_ns());
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "1", "-c", &load.connections.to_string(), "--latency"])
        .args(["-d", &format!("{seconds}s")]);
    if load.close {
        cmd.args(["-H", "Connection: close"]);
    }
    if let Some(delay) = load.delay_ms {
        let script = nginx.dir.path().join(format!("delay-{delay}.lua"));
        // Called by wrk after each response: the connection's pause, ms.
        std::fs::write(&script, format!("function delay()\n  return {delay}\nend\n"))?;
        cmd.arg("-s").arg(script);
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
    let p50 = parse_percentile(&text, "50%").with_context(|| format!("no 50% latency in wrk's output:\n{text}"))?;
    let p99 = parse_percentile(&text, "99%").with_context(|| format!("no 99% latency in wrk's output:\n{text}"))?;
    Ok(Run {
        requests,
        rps,
        p50,
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

/// A line of wrk's latency distribution (`"50%"`, `"99%"`), in seconds.
pub fn parse_percentile(text: &str, percentile: &str) -> Option<f64> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix(percentile))?.trim();
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

/// The 99 % line of wrk's latency distribution, in seconds.
pub fn parse_p99(text: &str) -> Option<f64> {
    parse_percentile(text, "99%")
}

/// The `Requests/sec:` figure of wrk's report.
pub fn parse_requests_per_second(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A free loopback TCP port.
pub fn free_port() -> Result<u16> {
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
