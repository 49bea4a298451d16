//! Real database and DNS servers for the protocol tests, each a private
//! instance on free loopback ports in a temporary directory, stopped when
//! dropped: PostgreSQL (with TLS and `pg_stat_statements`), MariaDB,
//! Redis (with a password) and dnsmasq (with a query log).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A server process; SIGTERM and wait when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command`, failing the test with its output when it fails.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "{what} did not start in {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A self-signed certificate for `localhost` in `dir`: (key, certificate).
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (key, cert) = (dir.join("server.key"), dir.join("server.crt"));
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null()));
    (key, cert)
}

/// The directory of PostgreSQL's server programs (`/usr/lib/postgresql/N/bin`).
pub fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server in /usr/lib/postgresql")
}

/// A PostgreSQL server, run as the `postgres` user, TLS on, trust
/// authentication on loopback, `pg_stat_statements` loaded.
pub struct Postgres {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its data and socket directory.
    pub dir: tempfile::TempDir,
    _process: Process,
}

impl Postgres {
    /// Starts a fresh cluster.
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        run(Command::new("chown").arg("postgres:postgres").arg(root));
        let bin = postgres_bin();
        let data = root.join("data");
        run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data));
        let (key, cert) = self_signed(root);
        run(Command::new("chown").arg("postgres:postgres").arg(&key).arg(&cert));
        let port = free_port();
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(root)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "shared_preload_libraries=pg_stat_statements",
                "-c",
                "pg_stat_statements.track=all",
                "-c",
                "ssl=on",
            ])
            .arg("-c")
            .arg(format!("ssl_cert_file={}", cert.display()))
            .arg("-c")
            .arg(format!("ssl_key_file={}", key.display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("postgres.log")).unwrap())
            .spawn()
            .expect("postgres");
        let server = Postgres {
            port,
            dir,
            _process: Process(child),
        };
        wait_until("postgres", Duration::from_secs(30), || {
            Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        });
        server.psql("CREATE EXTENSION pg_stat_statements", "disable");
        server
    }

    /// Runs one `psql -c` over TCP with `sslmode`; its output (unaligned,
    /// tuples only).
    pub fn psql(&self, sql: &str, sslmode: &str) -> String {
        let output = run(&mut self.psql_command(sql, sslmode));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `psql -c sql` over TCP with `sslmode`, not yet run.
    pub fn psql_command(&self, sql: &str, sslmode: &str) -> Command {
        let mut command = Command::new("psql");
        command
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-c", sql])
            .env("PGSSLMODE", sslmode);
        command
    }

    /// `pgbench` against the server, not yet run.
    pub fn pgbench(&self) -> Command {
        let mut command = Command::new(postgres_bin().join("pgbench"));
        command
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p", &self.port.to_string()])
            .env("PGSSLMODE", "disable");
        command
    }
}

/// A MariaDB server with a user `sonde` (password `sonde-pw`) allowed from
/// loopback, and a database `shop`.
pub struct Mariadb {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    _process: Process,
}

impl Mariadb {
    /// Starts a fresh server.
    pub fn start() -> Mariadb {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let data = root.join("data");
        run(Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .stdout(Stdio::null()));
        let port = free_port();
        let socket = root.join("mysqld.sock");
        let child = Command::new("mariadbd")
            .args([
                "--no-defaults",
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--port={port}"))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", root.join("mysqld.pid").display()))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(root.join("mysqld.log")).unwrap())
            .spawn()
            .expect("mariadbd (apt-get install mariadb-server)");
        let server = Mariadb {
            port,
            dir,
            _process: Process(child),
        };
        wait_until("mariadbd", Duration::from_secs(60), || socket.exists());
        run(Command::new("mariadb")
            .arg(format!("--socket={}", socket.display()))
            .args(["-u", "root", "-e"])
            .arg(
                "CREATE USER 'sonde'@'127.0.0.1' IDENTIFIED BY 'sonde-pw'; \
                 GRANT ALL ON *.* TO 'sonde'@'127.0.0.1'; CREATE DATABASE shop;",
            ));
        server
    }

    /// `mariadb` over TCP as `sonde`, not yet run.
    pub fn client(&self) -> Command {
        let mut command = Command::new("mariadb");
        command.args([
            "-h",
            "127.0.0.1",
            "-u",
            "sonde",
            "-psonde-pw",
            "--skip-ssl",
            "-P",
            &self.port.to_string(),
        ]);
        command
    }

    /// One statement's value of `SHOW GLOBAL STATUS LIKE name`.
    pub fn status(&self, name: &str) -> u64 {
        let output = run(self
            .client()
            .args(["-N", "-B", "-e"])
            .arg(format!("SHOW GLOBAL STATUS LIKE '{name}'")));
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no status {name}"))
    }
}

/// The password of the test Redis server.
pub const REDIS_PASSWORD: &str = "sonde-redis-secret-9Q";

/// A Redis server with a password and no persistence.
pub struct Redis {
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
    _process: Process,
}

impl Redis {
    /// Starts a server.
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--requirepass", REDIS_PASSWORD, "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let server = Redis {
            port,
            _dir: dir,
            _process: Process(child),
        };
        wait_until("redis-server", Duration::from_secs(20), || {
            server
                .cli(&["PING"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
        });
        server
    }

    /// `redis-cli` with the password and `args`, not yet run.
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut command = Command::new("redis-cli");
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "--no-auth-warning",
                "-a",
                REDIS_PASSWORD,
            ])
            .args(args);
        command
    }

    /// Per-command call counts from `INFO commandstats`.
    pub fn commandstats(&self) -> std::collections::BTreeMap<String, u64> {
        let output = run(&mut self.cli(&["INFO", "commandstats"]));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| {
                let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.strip_prefix("calls=")?.split(',').next()?.parse().ok()?;
                Some((name.to_uppercase(), calls))
            })
            .collect()
    }
}

/// dnsmasq answering `*.example.test` (A 10.1.2.3, AAAA fd00::3) and
/// NXDOMAIN for `*.missing.test`, logging every query.
pub struct Dnsmasq {
    /// The address it listens on (UDP and TCP).
    pub address: std::net::SocketAddr,
    /// Its query log.
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    _process: Process,
}

impl Dnsmasq {
    /// Starts dnsmasq on `ip`:`port`, logging queries.
    pub fn start(ip: &str, port: u16) -> Dnsmasq {
        Dnsmasq::start_with(ip, port, true)
    }

    /// Starts dnsmasq on `ip`:`port`; `log_queries` logs each query (eight
    /// writes per query: the benchmark leaves them out).
    pub fn start_with(ip: &str, port: u16, log_queries: bool) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("queries.log");
        let mut command = Command::new("dnsmasq");
        if log_queries {
            command.arg("--log-queries");
        }
        let child = command
            .args(["--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .args(["--user=root", "--cache-size=0"])
            .arg(format!("--listen-address={ip}"))
            .arg(format!("--port={port}"))
            .arg(format!("--log-facility={}", log.display()))
            .arg(format!("--pid-file={}", dir.path().join("dnsmasq.pid").display()))
            .args([
                "--address=/example.test/10.1.2.3",
                "--address=/example.test/fd00::3",
                "--address=/missing.test/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        let address = format!("{ip}:{port}").parse().unwrap();
        let server = Dnsmasq {
            address,
            log,
            _dir: dir,
            _process: Process(child),
        };
        wait_until("dnsmasq", Duration::from_secs(20), || {
            Command::new("dig")
                .args(["+short", "+time=1", "+tries=1", "-p", &port.to_string()])
                .arg(format!("@{ip}"))
                .arg("ready.example.test")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("10.1.2.3"))
        });
        server
    }

    /// Queries logged so far, as `(type, name)`: dnsmasq writes
    /// `query[A] name from 127.0.0.1`.
    pub fn queries(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find("query[")? + 6..];
                let (qtype, rest) = rest.split_once("] ")?;
                let name = rest.split_whitespace().next()?;
                Some((qtype.to_string(), name.to_string()))
            })
            .collect()
    }
}
