//! File paths, resolved once per (process, file) pair: a thread reads the
//! programs' new-pair notices as they come and reads the path of the
//! notice's fd from `/proc/PID/fd` while the call's file is (most likely)
//! still open, checking that the link still leads to the same inode. When
//! it is closed already, the path is the notice's chain of dentry names
//! (from the file system's root) under the mount point of that file
//! system, from `/proc/self/mountinfo`.
//!
//! Paths are kept per pair, not per inode: a file system reuses a deleted
//! file's inode number at once (ext4 does), and a cache by inode named a
//! new file after the deleted one. Each collection first resolves the
//! notices still queued ([`Paths::sync`]), so a pair whose process has
//! exited is named before its totals leave the kernel map.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sonde_ebpf::aya::maps::{MapData, RingBuf};

use super::bpf::{user_dev, FioKey, FioNewFile};

/// The prefix of a path known only in part (deeper than the kernel's walk
/// goes, or on a file system not mounted where the agent looks).
pub const UNRESOLVED: &str = "…";

/// How long the thread waits for a notice before looking at `stop`.
const POLL_MS: i32 = 200;

/// The notice ring and what resolving a notice reads: one reader at a
/// time (the thread, or a collection catching up).
struct Reader {
    ring: RingBuf<MapData>,
    mounts: Mounts,
    proc_root: PathBuf,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("proc_root", &self.proc_root)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Resolves every queued notice.
    fn drain(&mut self, shared: &Shared) {
        while let Some(record) = self.ring.next() {
            if let Some(notice) = FioNewFile::from_bytes(&record) {
                resolve(&notice, &self.proc_root, &mut self.mounts, shared);
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    paths: Mutex<HashMap<FioKey, String>>,
    reader: Mutex<Reader>,
    stop: AtomicBool,
    unresolved: AtomicU64,
}

/// The path cache and the thread that fills it.
#[derive(Debug)]
pub struct Paths {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Paths {
    /// Starts reading `ring`; `proc_root` is `/proc` (a test may pass
    /// another).
    pub fn start(ring: RingBuf<MapData>, proc_root: PathBuf) -> std::io::Result<Paths> {
        let fd = ring.as_raw_fd();
        let shared = Arc::new(Shared {
            paths: Mutex::default(),
            reader: Mutex::new(Reader {
                ring,
                mounts: Mounts::read(),
                proc_root,
            }),
            stop: AtomicBool::new(false),
            unresolved: AtomicU64::new(0),
        });
        let thread = std::thread::Builder::new().name("sonde-file-paths".into()).spawn({
            let shared = Arc::clone(&shared);
            move || read_notices(fd, &shared)
        })?;
        Ok(Paths {
            shared,
            thread: Some(thread),
        })
    }

    /// Resolves the notices still queued (the thread may lag behind a
    /// short-lived process).
    pub fn sync(&self) {
        if let Ok(mut reader) = self.shared.reader.lock() {
            reader.drain(&self.shared);
        }
    }

    /// The path of `pair`'s file, when known.
    pub fn get(&self, pair: &FioKey) -> Option<String> {
        self.shared.paths.lock().ok()?.get(pair).cloned()
    }

    /// Forgets the pairs not in `live` (bounds the cache by the map).
    pub fn retain(&self, live: &HashSet<FioKey>) {
        if let Ok(mut paths) = self.shared.paths.lock() {
            paths.retain(|pair, _| live.contains(pair));
        }
    }

    /// Files whose path could not be read from their fd (closed before
    /// the thread looked): they are named by their last component.
    pub fn unresolved(&self) -> u64 {
        self.shared.unresolved.load(Ordering::Relaxed)
    }
}

impl Drop for Paths {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: waits on the ring's fd (without holding the reader, so a
/// collection's [`Paths::sync`] never waits out a poll), then drains it.
fn read_notices(fd: RawFd, shared: &Shared) {
    while !shared.stop.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the lifetime of the call; the ring
        // (and its fd) lives in `shared`, which outlives this thread.
        unsafe { libc::poll(&mut poll, 1, POLL_MS) };
        if let Ok(mut reader) = shared.reader.lock() {
            reader.drain(shared);
        }
    }
}

/// Reads the path of the notice's fd, if it still leads to its file; else
/// the notice's dentry names under their mount point. Always read again:
/// a cached path for the same pair may belong to an earlier file with the
/// same inode number.
fn resolve(notice: &FioNewFile, proc_root: &std::path::Path, mounts: &mut Mounts, shared: &Shared) {
    let link = proc_root.join(format!("{}/fd/{}", notice.key.pid, notice.fd));
    let same_file =
        std::fs::metadata(&link).is_ok_and(|m| m.ino() == notice.key.ino && m.dev() == user_dev(notice.key.dev));
    let path = match std::fs::read_link(&link) {
        Ok(path) if same_file => path.to_string_lossy().into_owned(),
        _ => {
            let (in_fs, complete) = notice.path_in_fs();
            let mounted = complete.then(|| mounts.path(notice.key.dev, &in_fs)).flatten();
            mounted.unwrap_or_else(|| {
                shared.unresolved.fetch_add(1, Ordering::Relaxed);
                format!("{UNRESOLVED}{in_fs}")
            })
        }
    };
    if let Ok(mut paths) = shared.paths.lock() {
        paths.insert(notice.key, path);
    }
}

/// The mounts of `/proc/self/mountinfo`: (device, root in the file system,
/// mount point).
#[derive(Debug, Default)]
struct Mounts(Vec<(u32, String, String)>);

impl Mounts {
    fn read() -> Mounts {
        Mounts::parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    }

    /// Parses mountinfo (`proc(5)`): `ID PARENT MAJOR:MINOR ROOT POINT …`,
    /// devices as the kernel numbers them (major << 20 | minor).
    fn parse(text: &str) -> Mounts {
        let mounts = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace().skip(2);
                let (major, minor) = fields.next()?.split_once(':')?;
                let dev = major.parse::<u32>().ok()? << 20 | minor.parse::<u32>().ok()?;
                let root = unescape(fields.next()?);
                let point = unescape(fields.next()?);
                Some((dev, root, point))
            })
            .collect();
        Mounts(mounts)
    }

    /// `in_fs` (a path from the root of device `dev`'s file system) where
    /// it is mounted; the mounts are read again when `dev` is unknown.
    fn path(&mut self, dev: u32, in_fs: &str) -> Option<String> {
        if !self.0.iter().any(|(d, _, _)| *d == dev) {
            *self = Mounts::read();
        }
        self.0.iter().find_map(|(d, root, point)| {
            if *d != dev {
                return None;
            }
            let rest = if root == "/" {
                in_fs
            } else {
                in_fs.strip_prefix(root.as_str())?
            };
            if !rest.is_empty() && !rest.starts_with('/') {
                return None;
            }
            Some(if point == "/" {
                rest.to_string()
            } else {
                format!("{point}{rest}")
            })
        })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
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

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 22 0:26 / /tmp rw,nosuid shared:4 - tmpfs tmpfs rw
31 22 254:1 /srv/data /mnt/my\\040data rw shared:1 - ext4 /dev/vda1 rw
";

    #[test]
    fn paths_in_a_file_system_land_under_its_mount_point() {
        let mut mounts = Mounts::parse(MOUNTINFO);
        let vda1 = 254 << 20 | 1;
        assert_eq!(mounts.path(vda1, "/etc/hosts").as_deref(), Some("/etc/hosts"));
        assert_eq!(mounts.path(26, "/x/y").as_deref(), Some("/tmp/x/y"));
        let bind = Mounts(mounts.0[2..].to_vec());
        let mut bind = bind;
        assert_eq!(bind.path(vda1, "/srv/data/f").as_deref(), Some("/mnt/my data/f"));
        assert_eq!(bind.path(vda1, "/srv/database"), None);
    }
}
