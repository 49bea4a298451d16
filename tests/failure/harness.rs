//! The agent as a process for the failure tests: its config in a temporary
//! directory, its stderr in a file, signals, its API, and its final account.

pub use crate::common::{free_port, http_get, wait_for};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `sonde run`, killed on drop.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
    /// Port of its API.
    pub api: u16,
}

impl Agent {
    /// Runs `pipeline` after an `agent` block with a free API port.
    pub fn start(dir: &Path, pipeline: &str) -> Agent {
        let api = free_port();
        let text = format!("agent {{\n  api = \"127.0.0.1:{api}\"\n}}\n{pipeline}");
        Agent::start_raw(dir, &text, api, Stdio::null())
    }

    /// Runs `text` as is, stdout to `stdout`.
    pub fn start_raw(dir: &Path, text: &str, api: u16, stdout: Stdio) -> Agent {
        let config = dir.join("pipeline.hcl");
        std::fs::write(&config, text).unwrap();
        let log = dir.join("sonde.log");
        let child = crate::common::sonde()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(stdout)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Agent {
            child: Some(child),
            log,
            api,
        }
    }

    /// The child, to take its stdout.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap()
    }

    /// Sends `signal` (libc's number).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().unwrap().id() as i32;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill");
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for it to exit; its status and stderr.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, self.log());
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sonde did not exit within {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The sum of the agent metric `name` over series whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Some(text) = http_get(self.api, "/metrics") else {
            return 0.0;
        };
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One component's line of the final account, parsed:
/// `sink "otlp" "out": delivered 70, dropped 30 (error 20, shutdown 10)`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Account {
    /// Passed on or delivered.
    pub sent: u64,
    /// Dropped, by reason.
    pub dropped: std::collections::BTreeMap<String, u64>,
}

impl Account {
    /// Dropped for `reason` (0 when absent).
    pub fn dropped(&self, reason: &str) -> u64 {
        self.dropped.get(reason).copied().unwrap_or(0)
    }
}

/// The final account of `component` (`sink "otlp" "out"`) in a log.
pub fn account(log: &str, component: &str) -> Account {
    let prefix = format!("{component}: ");
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.find(&prefix).map(|at| &l[at + prefix.len()..]))
        .unwrap_or_else(|| panic!("no account of {component} in:\n{log}"));
    let number = |text: &str| {
        text.trim()
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("{text:?} in {line:?}"))
    };
    let (head, dropped) = match line.split_once(", dropped ") {
        Some((head, rest)) => {
            let reasons = rest.split_once('(').map(|(_, r)| r.trim_end_matches(')')).unwrap_or("");
            let dropped = reasons
                .split(", ")
                .filter(|r| !r.is_empty())
                .map(|r| {
                    let (reason, n) = r.rsplit_once(' ').unwrap();
                    (reason.to_string(), number(n))
                })
                .collect();
            (head, dropped)
        }
        None => (line, Default::default()),
    };
    let sent = head.rsplit_once(' ').map(|(_, n)| number(n)).unwrap();
    Account { sent, dropped }
}
