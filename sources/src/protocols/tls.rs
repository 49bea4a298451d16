//! Finding the TLS libraries processes use, so the uprobes can be attached
//! to them: `libssl.so*` in a process's memory maps, an executable that
//! carries `SSL_read`/`SSL_write` itself (statically linked OpenSSL or
//! BoringSSL), or a Go executable that uses `crypto/tls` (see
//! [`super::gotls`]). Each file (device and inode) is attached once, for
//! every process that maps it; containers' files are reached through
//! `/proc/PID/root`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bpf::ProtoGoOffsets;
use super::gotls::{self, BuildInfo, GoTls, Inspection, Untraceable};

/// Which TLS implementation a file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsKind {
    /// OpenSSL or BoringSSL (`SSL_read` …): a library or a static executable.
    OpenSsl,
    /// Go's `crypto/tls`, and where its probes go.
    Go(Arc<GoTls>),
}

/// A file that holds the TLS functions, and a path to it from this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFile {
    /// Device and inode: the file's identity across mount namespaces.
    pub id: (u64, u64),
    /// `/proc/PID/root/…`, valid while that process lives.
    pub path: PathBuf,
    /// What it holds.
    pub kind: TlsKind,
}

/// A Go executable that uses `crypto/tls` and cannot be traced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UntraceableFile {
    /// The first process it was seen run by.
    pub pid: u32,
    pub path: PathBuf,
    pub build: BuildInfo,
    pub reason: Untraceable,
}

/// Which files were already looked at.
#[derive(Debug, Default)]
pub struct TlsFinder {
    seen: HashSet<(u64, u64)>,
    checked_pids: HashSet<u32>,
    /// Traceable Go executables: their `tls.Conn` offsets, for each new
    /// process that runs one.
    go_files: HashMap<(u64, u64), ProtoGoOffsets>,
    /// (pid, offsets) of Go processes found and not yet taken.
    go_processes: Vec<(u32, ProtoGoOffsets)>,
    /// Untraceable Go executables found and not yet taken.
    untraceable: Vec<UntraceableFile>,
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
                self.consider(proc.join("root").join(path.trim_start_matches('/')), &mut out, |_| {
                    Some(TlsKind::OpenSsl)
                });
            }
        }
        let exe = proc.join("exe");
        if let Some(offsets) = fs::metadata(&exe)
            .ok()
            .and_then(|m| self.go_files.get(&(m.dev(), m.ino())))
        {
            self.go_processes.push((pid, *offsets));
        }
        let mut go = None;
        self.consider(exe.clone(), &mut out, |path| {
            if has_tls_symbols(path) {
                return Some(TlsKind::OpenSsl);
            }
            match gotls::inspect(path) {
                Inspection::Traceable(found) => {
                    let found = Arc::new(*found);
                    go = Some(Ok(found.offsets));
                    Some(TlsKind::Go(found))
                }
                Inspection::Untraceable(build, reason) => {
                    go = Some(Err((build, reason)));
                    None
                }
                Inspection::NotGo | Inspection::NoTls(_) => None,
            }
        });
        match go {
            Some(Ok(offsets)) => {
                if let Some(file) = out.last() {
                    self.go_files.insert(file.id, offsets);
                }
                self.go_processes.push((pid, offsets));
            }
            Some(Err((build, reason))) => self.untraceable.push(UntraceableFile {
                pid,
                path: fs::read_link(&exe).unwrap_or(exe),
                build,
                reason,
            }),
            None => {}
        }
        out
    }

    /// Go processes found since the last call, with their `tls.Conn`
    /// offsets (for the kernel's per-process map).
    pub fn take_go_processes(&mut self) -> Vec<(u32, ProtoGoOffsets)> {
        std::mem::take(&mut self.go_processes)
    }

    /// Go executables found since the last call that use `crypto/tls` but
    /// cannot be traced.
    pub fn take_untraceable(&mut self) -> Vec<UntraceableFile> {
        std::mem::take(&mut self.untraceable)
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

    fn consider(&mut self, path: PathBuf, out: &mut Vec<TlsFile>, kind: impl FnOnce(&Path) -> Option<TlsKind>) {
        let Ok(meta) = fs::metadata(&path) else { return };
        let id = (meta.dev(), meta.ino());
        if self.seen.contains(&id) {
            return;
        }
        // Executables are checked once each, whatever the answer.
        self.seen.insert(id);
        if let Some(kind) = kind(&path) {
            out.push(TlsFile { id, path, kind });
        }
    }
}

/// What `sonde doctor --pid` says of a process's TLS.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProcessTls {
    pub pid: u32,
    /// Its executable, as the process sees it.
    pub executable: Option<String>,
    /// `libssl.so*` files it maps (probed: OpenSSL).
    pub libssl: Vec<String>,
    /// The executable defines `SSL_read` itself (static OpenSSL/BoringSSL).
    pub static_openssl: bool,
    /// A Go executable: what its build information and symbols say.
    pub go: Option<GoReport>,
}

/// A Go executable, for [`ProcessTls`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct GoReport {
    pub version: String,
    pub main_module: Option<String>,
    pub dependencies: usize,
    pub uses_crypto_tls: bool,
    /// Its `crypto/tls` calls can be traced.
    pub traceable: bool,
    /// Why not, when it cannot.
    pub reason: Option<String>,
    /// Where the `tls.Conn` offsets come from, when traceable.
    pub offsets_source: Option<gotls::OffsetsSource>,
}

/// Looks at process `pid`'s TLS libraries and executable.
pub fn describe(pid: u32) -> std::io::Result<ProcessTls> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let maps = fs::read_to_string(proc.join("maps"))?;
    let exe = proc.join("exe");
    let executable = fs::read_link(&exe).ok().map(|p| p.display().to_string());
    let static_openssl = has_tls_symbols(&exe);
    let report = |build: &BuildInfo, uses_crypto_tls, found: Option<Result<&GoTls, &Untraceable>>| GoReport {
        version: build.go_version.clone(),
        main_module: build.main.as_ref().map(|m| m.path.clone()),
        dependencies: build.deps.len(),
        uses_crypto_tls,
        traceable: matches!(found, Some(Ok(_))),
        reason: found.and_then(|f| f.err()).map(ToString::to_string),
        offsets_source: found.and_then(|f| f.ok()).map(|go| go.offsets_source),
    };
    let go = match gotls::inspect(&exe) {
        Inspection::NotGo => None,
        Inspection::NoTls(build) => Some(report(&build, false, None)),
        Inspection::Traceable(found) => Some(report(&found.build, true, Some(Ok(&found)))),
        Inspection::Untraceable(build, reason) => Some(report(&build, true, Some(Err(&reason)))),
    };
    Ok(ProcessTls {
        pid,
        executable,
        libssl: libssl_paths(&maps).into_iter().map(str::to_string).collect(),
        static_openssl,
        go,
    })
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
