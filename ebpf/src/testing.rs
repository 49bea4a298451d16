//! Helpers for tests that need to load BPF for real.
//!
//! With `SONDE_REQUIRE_BPF=1` (CI) a test that cannot load BPF fails;
//! without it, it prints why and skips.

/// The environment variable that turns skips into failures.
pub const REQUIRE_BPF: &str = "SONDE_REQUIRE_BPF";

/// Whether `SONDE_REQUIRE_BPF` is set to something other than `0` or empty.
pub fn bpf_required() -> bool {
    std::env::var(REQUIRE_BPF).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether this process can load and attach BPF programs (tried for real
/// with a tracepoint program). Returns `false` after printing the reason
/// when the test should skip; panics with the reason when
/// `SONDE_REQUIRE_BPF=1`.
pub fn bpf_available_or_skip(test: &str) -> bool {
    match crate::probe::trial(crate::probe::Feature::Tracepoint) {
        Ok(()) => true,
        Err(error) => skip_or_fail(test, &format!("cannot load BPF: {error}")),
    }
}

/// Skips (returns `false`) or, with `SONDE_REQUIRE_BPF=1`, panics, naming `reason`.
pub fn skip_or_fail(test: &str, reason: &str) -> bool {
    if bpf_required() {
        panic!("{test}: {reason} ({REQUIRE_BPF} is set, so this fails instead of skipping)");
    }
    // Written to the process' stderr, not eprintln!, which the test
    // harness captures: a skip must be visible.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("SKIP {test}: {reason} (set {REQUIRE_BPF}=1 to make this a failure)\n").as_bytes(),
    );
    false
}

/// Runs a source's conformance check as a real-kernel test: skips (or,
/// with `SONDE_REQUIRE_BPF=1`, fails) when BPF cannot load or the workload
/// cannot run on this machine; panics with the check's reason when the
/// source saw something other than the independent count.
pub fn run_check(test: &str, check: impl FnOnce() -> Result<String, crate::CheckError>) {
    if !bpf_available_or_skip(test) {
        return;
    }
    match check() {
        Ok(evidence) => eprintln!("{test}: {evidence}"),
        Err(error @ crate::CheckError::Workload { .. }) => {
            skip_or_fail(test, &error.to_string());
        }
        Err(error) => panic!("{test}: {} failed: {error}", error.stage()),
    }
}

/// A loop device over a temporary file, detached and removed on drop: a
/// disk no other process uses, for exact I/O counts.
#[derive(Debug)]
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: std::path::PathBuf,
    /// `loopN`, as in /proc/diskstats and the `device` attribute.
    pub name: String,
    backing: std::path::PathBuf,
}

impl LoopDevice {
    /// Creates a `size`-byte file and attaches it with `losetup`, with no
    /// I/O scheduler.
    pub fn create(size: u64) -> std::io::Result<LoopDevice> {
        let backing = std::env::temp_dir().join(format!(
            "sonde-loop-{}-{}.img",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        std::fs::File::create(&backing)?.set_len(size)?;
        let output = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&backing)
            .output();
        let output = match output {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                let _ = std::fs::remove_file(&backing);
                return Err(std::io::Error::other(format!(
                    "losetup failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&backing);
                return Err(std::io::Error::other(format!("cannot run losetup: {e}")));
            }
        };
        let path = std::path::PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        // Loop devices are reused, with the scheduler a previous user set:
        // start from none, so every request is one issue and one complete.
        let _ = std::fs::write(format!("/sys/block/{name}/queue/scheduler"), "none");
        // Let udev finish probing the new device before anyone counts.
        let _ = std::process::Command::new("udevadm").arg("settle").status();
        Ok(LoopDevice { path, name, backing })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = std::process::Command::new("losetup").arg("-d").arg(&self.path).status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// Does `count` `O_DIRECT` reads or writes of `size` bytes (a multiple of
/// 4096) at consecutive offsets of `device`, each waited for: exactly
/// `count` block requests of `size` bytes, none merged.
pub fn direct_io(device: &std::path::Path, write: bool, size: usize, count: usize) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    const ALIGN: usize = 4096;
    assert!(
        size > 0 && size.is_multiple_of(ALIGN),
        "size must be a multiple of {ALIGN}"
    );
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_DIRECT)
        .open(device)?;
    // O_DIRECT needs an aligned buffer: take an aligned window of a larger one.
    let mut raw = vec![0x5au8; size + ALIGN];
    let skip = (ALIGN - raw.as_ptr() as usize % ALIGN) % ALIGN;
    let buf = &mut raw[skip..skip + size];
    for i in 0..count {
        let offset = (i * size) as u64;
        let done = if write {
            file.write_at(buf, offset)?
        } else {
            file.read_at(buf, offset)?
        };
        if done != size {
            return Err(std::io::Error::other(format!("short I/O: {done} of {size} bytes")));
        }
    }
    Ok(())
}

/// One disk's line of `/proc/diskstats` (the fields tests compare).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStatsLine {
    /// Reads completed.
    pub reads: u64,
    /// Sectors read (512 bytes each).
    pub read_sectors: u64,
    /// Writes completed.
    pub writes: u64,
    /// Sectors written.
    pub write_sectors: u64,
    /// Milliseconds spent on reads (field 4: each read's time from its
    /// start to its completion, summed in ns and printed in ms).
    pub read_ms: u64,
    /// Milliseconds spent on writes (field 8).
    pub write_ms: u64,
    /// Discards completed (kernel 4.18+).
    pub discards: u64,
    /// Flushes completed (kernel 5.5+).
    pub flushes: u64,
}

/// The `/proc/diskstats` line of device `name`.
pub fn diskstats(name: &str) -> std::io::Result<DiskStatsLine> {
    let text = std::fs::read_to_string("/proc/diskstats")?;
    let fields: Vec<u64> = text
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&name))
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{name} not in /proc/diskstats")))?
        .iter()
        .skip(3)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    Ok(DiskStatsLine {
        reads: at(0),
        read_sectors: at(2),
        read_ms: at(3),
        writes: at(4),
        write_sectors: at(6),
        write_ms: at(7),
        discards: at(11),
        flushes: at(15),
    })
}

/// The kernel's own counters of a TCP socket (`getsockopt(TCP_INFO)`):
/// segments in and out, retransmits, smoothed RTT, state.
pub fn tcp_info(socket: &impl std::os::fd::AsRawFd) -> std::io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain data, filled by the kernel below.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is writable for `len` bytes, and `len` says so.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}

/// `tcpi_state` of a socket the kernel has closed (`TCP_CLOSE`): its
/// counters no longer move.
pub const TCP_STATE_CLOSE: u8 = 7;

/// A cgroup v2 directory of a test's own, under the v2 root, removed on
/// drop: for tests whose sources filter on a cgroup, so that the node's
/// other processes stay out of their counts.
#[derive(Debug)]
pub struct TestCgroup {
    /// Its path.
    pub path: std::path::PathBuf,
    /// Its path under the v2 root (what source configs name).
    pub relative: String,
}

impl TestCgroup {
    /// A cgroup of its own for `test` (tests run in parallel threads of
    /// one process: the pid alone would give them the same one).
    pub fn create(test: &str) -> std::io::Result<TestCgroup> {
        let root = crate::cgroup::cgroup2_root()?;
        let relative = format!("sonde-test-{}-{test}", std::process::id());
        let path = root.join(&relative);
        std::fs::create_dir_all(&path)?;
        Ok(TestCgroup { path, relative })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}
