//! What the kernel must offer before programs load: tracefs (tracepoint
//! ids, kprobe and uprobe events), bpffs (pinning), and enough
//! `RLIMIT_MEMLOCK` on kernels before 5.11, which charge BPF maps and
//! programs to it instead of to the memory cgroup.
//!
//! The agent mounts tracefs and bpffs itself when they are missing and it
//! is allowed to (CAP_SYS_ADMIN in the mount namespace); in a Kubernetes pod
//! the host's `/sys/kernel/tracing` and `/sys/fs/bpf` are usually mounted in.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where tracefs is mounted by convention (kernel 4.1+).
pub const TRACEFS: &str = "/sys/kernel/tracing";
/// Where debugfs is mounted by convention; old kernels expose tracefs under it.
pub const DEBUGFS: &str = "/sys/kernel/debug";
/// Where bpffs is mounted by convention.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Why the system could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// `mount(2)` failed.
    #[error("cannot mount {fs} at {path}: {source}")]
    Mount {
        /// The file system type.
        fs: &'static str,
        /// The mount point.
        path: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `/proc/self/mounts` could not be read.
    #[error("cannot read /proc/self/mounts: {source}")]
    Mounts {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `setrlimit(RLIMIT_MEMLOCK)` failed.
    #[error("cannot raise RLIMIT_MEMLOCK (kernel < 5.11 charges BPF memory to it): {source}")]
    Memlock {
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One line of `/proc/self/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point.
    pub path: PathBuf,
    /// The file system type (`tracefs`, `bpf`, `cgroup2` …).
    pub fstype: String,
}

/// The mounts of this process' mount namespace.
pub fn mounts() -> Result<Vec<MountEntry>, SystemError> {
    let text = std::fs::read_to_string("/proc/self/mounts").map_err(|source| SystemError::Mounts { source })?;
    Ok(parse_mounts(&text))
}

fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let _device = fields.next()?;
            let path = unescape(fields.next()?);
            let fstype = fields.next()?.to_string();
            Some(MountEntry {
                path: PathBuf::from(path),
                fstype,
            })
        })
        .collect()
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mounts.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The first mount point of `fstype`, if any.
pub fn find_mount(fstype: &str) -> Option<PathBuf> {
    mounts().ok()?.into_iter().find(|m| m.fstype == fstype).map(|m| m.path)
}

/// Whether a file system was already there or was mounted now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mounted {
    /// It was mounted already, here.
    Already(PathBuf),
    /// sonde mounted it, here.
    Now(PathBuf),
}

impl Mounted {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        match self {
            Mounted::Already(p) | Mounted::Now(p) => p,
        }
    }
}

/// Makes sure tracefs is reachable, mounting it at [`TRACEFS`] if needed.
pub fn ensure_tracefs() -> Result<Mounted, SystemError> {
    let mounts = mounts()?;
    if let Some(m) = mounts.iter().find(|m| m.fstype == "tracefs") {
        return Ok(Mounted::Already(m.path.clone()));
    }
    // Kernels before 4.1 (and some setups) only have tracing under debugfs.
    if let Some(m) = mounts.iter().find(|m| m.fstype == "debugfs") {
        let tracing = m.path.join("tracing");
        if tracing.join("events").exists() {
            return Ok(Mounted::Already(tracing));
        }
    }
    mount("tracefs", TRACEFS)?;
    Ok(Mounted::Now(PathBuf::from(TRACEFS)))
}

/// Makes sure bpffs is mounted, at [`BPFFS`] if it was not.
pub fn ensure_bpffs() -> Result<Mounted, SystemError> {
    if let Some(path) = mounts()?.into_iter().find(|m| m.fstype == "bpf").map(|m| m.path) {
        return Ok(Mounted::Already(path));
    }
    mount("bpf", BPFFS)?;
    Ok(Mounted::Now(PathBuf::from(BPFFS)))
}

fn mount(fs: &'static str, path: &'static str) -> Result<(), SystemError> {
    let err = |source| SystemError::Mount { fs, path, source };
    let c_fs = CString::new(fs).map_err(|e| err(io::Error::other(e)))?;
    let c_path = CString::new(path).map_err(|e| err(io::Error::other(e)))?;
    // SAFETY: both strings are NUL-terminated and outlive the call; a null
    // data pointer is allowed for these file systems.
    let rc = unsafe { libc::mount(c_fs.as_ptr(), c_path.as_ptr(), c_fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    tracing::info!(fs, path, "mounted");
    Ok(())
}

/// Whether the running kernel charges BPF memory to `RLIMIT_MEMLOCK`
/// (before 5.11; later kernels use the memory cgroup).
pub fn kernel_uses_memlock() -> bool {
    match aya::util::KernelVersion::current() {
        Ok(version) => version < aya::util::KernelVersion::new(5, 11, 0),
        Err(_) => true,
    }
}

/// Raises `RLIMIT_MEMLOCK` to unlimited when the kernel charges BPF memory
/// to it. Returns whether it changed anything.
pub fn raise_memlock_if_needed() -> Result<bool, SystemError> {
    if !kernel_uses_memlock() {
        return Ok(false);
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return Err(SystemError::Memlock {
            source: io::Error::last_os_error(),
        });
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Ok(false);
    }
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `unlimited` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        return Err(SystemError::Memlock {
            source: io::Error::last_os_error(),
        });
    }
    Ok(true)
}

/// What [`prepare`] found or did.
#[derive(Debug)]
pub struct Prepared {
    /// tracefs.
    pub tracefs: Result<Mounted, SystemError>,
    /// bpffs.
    pub bpffs: Result<Mounted, SystemError>,
    /// Whether `RLIMIT_MEMLOCK` was raised.
    pub memlock: Result<bool, SystemError>,
}

/// Mounts tracefs and bpffs if missing and raises `RLIMIT_MEMLOCK` if
/// needed, once per process (aya caches where tracefs is on first use, so
/// this must run before any program loads). Failures are logged once and
/// returned; a load that needs what failed reports its own error.
pub fn prepare() -> &'static Prepared {
    static PREPARED: OnceLock<Prepared> = OnceLock::new();
    PREPARED.get_or_init(|| {
        let prepared = Prepared {
            tracefs: ensure_tracefs(),
            bpffs: ensure_bpffs(),
            memlock: raise_memlock_if_needed(),
        };
        for error in [
            prepared.tracefs.as_ref().err(),
            prepared.bpffs.as_ref().err(),
            prepared.memlock.as_ref().err(),
        ]
        .into_iter()
        .flatten()
        {
            tracing::warn!(%error, "eBPF setup incomplete");
        }
        prepared
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mounts_with_escapes() {
        let text = "tracefs /sys/kernel/tracing tracefs rw 0 0\nnone /mnt/my\\040dir bpf rw 0 0\n";
        let mounts = parse_mounts(text);
        assert_eq!(mounts[0].fstype, "tracefs");
        assert_eq!(mounts[1].path, PathBuf::from("/mnt/my dir"));
        assert_eq!(mounts[1].fstype, "bpf");
    }
}
