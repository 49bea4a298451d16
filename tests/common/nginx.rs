//! A real nginx for the protocol tests: plain HTTP and HTTPS (a
//! self-signed certificate made with `openssl`) on free loopback ports,
//! with an access log that states what nginx served, one line per request:
//! `METHOD URI STATUS`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running nginx; stopped when dropped.
pub struct Nginx {
    /// Plain HTTP port.
    pub http_port: u16,
    /// HTTPS port.
    pub https_port: u16,
    /// The access log.
    pub access_log: PathBuf,
    dir: tempfile::TempDir,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Nginx {
    /// Starts nginx (one worker) serving `/`, `/big` (5 MB), `/chunked`,
    /// a 404 for anything unknown, `/status/{201,500,503}` and `/echo`.
    pub fn start() -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("html")).unwrap();
        std::fs::write(root.join("html/index.html"), "hello\n").unwrap();
        std::fs::write(root.join("html/big"), vec![b'x'; 5 * 1024 * 1024]).unwrap();
        let (key, cert) = super::servers::self_signed(root);
        let (key, cert) = (key.display(), cert.display());
        let (http_port, https_port) = (free_port(), free_port());
        let access_log = root.join("access.log");
        let config = format!(
            r#"user root;
worker_processes 1;
daemon off;
error_log {root}/error.log;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format requests '$request_method $request_uri $status';
    access_log {log} requests;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {root}/html;
        location = /chunked {{ chunked_transfer_encoding on; return 200 "chunked body\n"; }}
        location = /status/201 {{ return 201 "created\n"; }}
        location = /status/500 {{ return 500; }}
        location = /status/503 {{ return 503; }}
        location = /echo {{ return 200 "echo\n"; }}
    }}
}}
"#,
            root = root.display(),
            log = access_log.display(),
        );
        let config_path = root.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nginx (apt-get install nginx)");
        let mut nginx = Nginx {
            http_port,
            https_port,
            access_log,
            dir,
            child,
        };
        nginx.wait_ready();
        nginx
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                use std::io::Read;
                self.child.stderr.take().map(|mut e| e.read_to_string(&mut stderr));
                panic!("nginx exited ({status}): {stderr}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.https_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.http_port)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
        );
    }

    /// The access log's lines (`METHOD URI STATUS`) so far.
    pub fn served(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: fast shutdown of master and workers.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
