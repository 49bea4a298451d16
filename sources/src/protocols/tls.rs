//! Finding the TLS libraries processes use, so the uprobes can be attached
//! to them: `libssl.so*` in a process's memory maps, or an executable that
//! carries `SSL_read`/`SSL_write` itself (statically linked OpenSSL or
//! BoringSSL). Each file (device and inode) is attached once, for every
//! process that maps it; containers' files are reached through
//! `/proc/PID/root`.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file that holds the TLS functions, and a path to it from this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    /// Device and inode: the file's identity across mount namespaces.
    pub id: (u64, u64),
    /// `/proc/PID/root/…`, valid while that process lives.
    pub path: PathBuf,
}

/// Which files were already looked at.
#[derive(Debug, Default)]
pub struct TlsFinder {
    seen: HashSet<(u64, u64)>,
    checked_pids: HashSet<u32>,
}

impl TlsFinder {
    /// New files with TLS functions used by `pid` (each file once across
    /// all calls). A pid is looked at once until [`TlsFinder::forget`].
    pub fn find(&mut self, pid: u32) -> Vec<TlsFile> {
        if !self.checked_pids.insert(pid) {
            return Vec::new();
        }
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let mut out = Vec::new();
        if let Ok(maps) = fs::read_to_string(proc.join("maps")) {
            for path in libssl_paths(&maps) {
                self.consider(proc.join("root").join(path.trim_start_matches('/')), &mut out, |_| true);
            }
        }
        self.consider(proc.join("exe"), &mut out, has_tls_symbols);
        out
    }

    /// Every process now (at start).
    pub fn find_all(&mut self) -> Vec<TlsFile> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        let pids: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.into_iter().flat_map(|pid| self.find(pid)).collect()
    }

    /// The process exited: a new one with its pid is looked at again.
    pub fn forget(&mut self, pid: u32) {
        self.checked_pids.remove(&pid);
    }

    fn consider(&mut self, path: PathBuf, out: &mut Vec<TlsFile>, wanted: impl Fn(&Path) -> bool) {
        let Ok(meta) = fs::metadata(&path) else { return };
        let id = (meta.dev(), meta.ino());
        if self.seen.contains(&id) {
            return;
        }
        // Executables are checked once each, whatever the answer.
        self.seen.insert(id);
        if wanted(&path) {
            out.push(TlsFile { id, path });
        }
    }
}

/// Paths of `libssl.so*` files in a `/proc/PID/maps` text.
pub fn libssl_paths(maps: &str) -> Vec<&str> {
    let mut out: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| {
            path.starts_with('/')
                && Path::new(path)
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libssl.so"))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Largest executable whose symbols are read (bigger ones are skipped).
const MAX_EXECUTABLE_BYTES: u64 = 512 * 1024 * 1024;

/// Whether the ELF file defines `SSL_read` or `SSL_read_ex` itself.
fn has_tls_symbols(path: &Path) -> bool {
    use object::{Object, ObjectSymbol};
    let Ok(file) = fs::File::open(path) else { return false };
    if file.metadata().map_or(true, |m| m.len() > MAX_EXECUTABLE_BYTES) {
        return false;
    }
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return false;
    };
    let defines = |name: &str| {
        elf.symbols()
            .chain(elf.dynamic_symbols())
            .any(|s| s.is_definition() && s.name() == Ok(name))
    };
    defines("SSL_read") || defines("SSL_read_ex")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libssl_is_found_in_memory_maps_once_per_path() {
        let maps = "\
7f0a1000-7f0a2000 r--p 00000000 fd:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0a2000-7f0a3000 r-xp 00001000 fd:01 1234 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0a3000-7f0a4000 r--p 00000000 fd:01 1300 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0a4000-7f0a5000 rw-p 00000000 00:00 0
7f0a5000-7f0a6000 r--p 00000000 fd:01 99 /opt/app/libssl.so.1.1 (deleted)
";
        assert_eq!(
            libssl_paths(maps),
            ["/opt/app/libssl.so.1.1", "/usr/lib/x86_64-linux-gnu/libssl.so.3"]
        );
    }

    #[test]
    fn an_executable_without_openssl_has_no_tls_symbols_and_libssl_has_them() {
        assert!(!has_tls_symbols(Path::new("/bin/sh")));
        let maps = fs::read_to_string("/proc/self/maps").unwrap();
        // This test binary does not link libssl; the system one, where
        // installed, defines the functions.
        assert!(libssl_paths(&maps).is_empty());
        for candidate in [
            "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            "/usr/lib/aarch64-linux-gnu/libssl.so.3",
        ] {
            if Path::new(candidate).exists() {
                assert!(has_tls_symbols(Path::new(candidate)));
            }
        }
    }
}
