//! JIT symbols from perf maps: `/tmp/perf-PID.map`, written by runtimes
//! that compile code at run time (Node with
//! `--perf-basic-prof-only-functions`, the JVM with `jcmd PID
//! Compiler.perfmap` (JDK 17+) or perf-map-agent, .NET with
//! `DOTNET_PerfMapEnabled=1`, Python 3.12+ with `-X perf`). Each line is
//! `START SIZE NAME`, START and SIZE in hex (the JVM writes `0x`).
//!
//! A process in a container writes the map into its own `/tmp`, named by
//! its pid in its own pid namespace: it is read through `/proc/PID/root`
//! with that pid (`NSpid`), so no mount of the container is needed.
//! JIT code is walked with frame pointers: V8 keeps them, the JVM needs
//! `-XX:+PreserveFramePointer`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sonde_core::event::SharedStr;

/// One process' perf map, sorted by address.
#[derive(Clone, Debug, Default)]
pub struct PerfMap {
    entries: Vec<(u64, u64, SharedStr)>,
    /// Modification time and size when read: a map is appended to while the
    /// runtime compiles, and is read again when it changed.
    stamp: Option<(SystemTime, u64)>,
}

impl PerfMap {
    /// Parses a perf map's text. Later lines win over earlier ones for the
    /// same address (code is recompiled in place).
    pub fn parse(text: &str) -> PerfMap {
        let mut entries: Vec<(u64, u64, SharedStr)> = text
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let start = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
                let size = u64::from_str_radix(parts.next()?.trim_start_matches("0x"), 16).ok()?;
                let name = parts.next()?.trim();
                (size > 0 && !name.is_empty())
                    .then(|| (start, start.saturating_add(size), SharedStr::from(name.to_string())))
            })
            .collect();
        // Stable: among equal starts the last line stays last.
        entries.sort_by_key(|e| e.0);
        PerfMap { entries, stamp: None }
    }

    /// The symbol whose range holds `address`.
    pub fn lookup(&self, address: u64) -> Option<&SharedStr> {
        let index = self.entries.partition_point(|e| e.0 <= address);
        let (_, end, name) = self.entries.get(index.checked_sub(1)?)?;
        (address < *end).then_some(name)
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where process `pid` (`ns_pid` inside its pid namespace) writes its
    /// perf map, seen through its root (its /tmp may be its own).
    pub fn path(procfs: &Path, pid: u32, ns_pid: u32) -> PathBuf {
        procfs.join(format!("{pid}/root/tmp/perf-{ns_pid}.map"))
    }

    /// Reads `path` again if it changed since `self` was read. Keeps what
    /// it had when the file is gone (the process exited).
    pub fn refresh(&mut self, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        if self.stamp == Some(stamp) {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(path) {
            *self = PerfMap::parse(&text);
            self.stamp = Some(stamp);
        }
    }
}
