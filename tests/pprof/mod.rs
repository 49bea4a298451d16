//! Helpers of the profile tests: the workload, the independent pprof
//! decoder (decode.py), and the agent as a process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use sonde_ebpf::testing::skip_or_fail;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Debian's Python, which has python3-protobuf (`cargo xtask test` installs it).
pub const PYTHON: &str = "/usr/bin/python3";

/// tests/workload/hot.c built with frame pointers, once per test binary;
/// `None` (skip) or a panic (SONDE_REQUIRE_BPF=1) without gcc.
pub fn workload(test: &str) -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sonde-hot-{}", std::process::id()));
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        // Named so its comm is `sonde-hot`.
        let binary = out.join("sonde-hot");
        let output = Command::new("gcc")
            .args(["-O1", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
            .arg(&binary)
            .arg(Path::new(ROOT).join("tests/workload/hot.c"))
            .output()
            .map_err(|e| format!("cannot run gcc: {e}"))?;
        if !output.status.success() {
            return Err(format!("gcc failed: {}", String::from_utf8_lossy(&output.stderr)));
        }
        Ok(binary)
    });
    match built {
        Ok(path) => Some(path.clone()),
        Err(reason) => {
            skip_or_fail(test, reason);
            None
        }
    }
}

/// tests/pprof/decode.py, run by Debian's Python.
pub struct Decoder;

impl Decoder {
    /// The decoder, if its Python, protobuf runtime, protoc and profile.proto are here.
    pub fn new(test: &str) -> Option<Decoder> {
        let ok = Command::new(PYTHON)
            .args(["-c", "import google.protobuf"])
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("protoc").arg("--version").output().is_ok();
        if !ok {
            skip_or_fail(
                test,
                "the pprof decoder needs python3-protobuf, protobuf-compiler and golang-github-google-pprof-dev \
                 (cargo xtask test installs them)",
            );
            return None;
        }
        Some(Decoder)
    }

    /// The script's path.
    pub fn script() -> PathBuf {
        Path::new(ROOT).join("tests/pprof/decode.py")
    }

    /// A pprof file (gzipped or not), decoded.
    pub fn decode_file(&self, file: &Path) -> Value {
        let output = Command::new(PYTHON)
            .arg(Self::script())
            .arg("decode")
            .arg(file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "decode.py {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Panics unless Python's XML parser reads `file`.
    pub fn check_xml(&self, file: &Path) {
        let status = Command::new(PYTHON)
            .args(["-c", "import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])"])
            .arg(file)
            .status()
            .unwrap();
        assert!(status.success(), "{} is not valid XML", file.display());
    }
}

/// The files of `dir` whose names end with `suffix`, sorted.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// [`files`] without the `-latest` copy: one file per interval.
pub fn interval_files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    files(dir, suffix)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("-latest."))
        .collect()
}

/// Nanoseconds since the epoch of an RFC 3339 time.
pub fn rfc3339_nanos(text: &str) -> i64 {
    let time = humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    time.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

/// `sonde run` in the background, stopped with SIGTERM.
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts `sonde run --config CONFIG` and waits until its pipeline runs
    /// (so every source is loaded and attached).
    pub fn start(config: &Path) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sonde"))
            .args(["--log-level", "info", "run", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("sonde: {line}");
                if line.contains("pipeline running") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("sonde did not start its pipeline");
        }
        Agent { child }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "sonde failed: {status}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "sonde did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
