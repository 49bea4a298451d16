//! Separate debug info: the symbols distributions strip from their
//! binaries and ship apart (Debian's `*-dbg` and `*-dbgsym` packages,
//! Fedora's `debuginfo`), found the way perf and gdb find them:
//!
//! 1. by build id: `DEBUG_DIR/.build-id/xx/yyyy….debug`;
//! 2. by `.gnu_debuglink` (a file name and its CRC-32): beside the binary,
//!    in its `.debug/` folder, and under `DEBUG_DIR/` + the binary's folder;
//! 3. from a debuginfod server, when one is configured
//!    (`GET URL/buildid/HEX/debuginfo`), kept in a cache folder.
//!
//! `DEBUG_DIR` is `/usr/lib/debug`, first inside the process' root (a
//! container's own packages), then on the host. A debug file holds the full
//! symbol table (static functions such as libc's `__libc_start_call_main`
//! and `start_thread`, absent from `.dynsym`) and the DWARF. Its code
//! sections are empty (NOBITS), so it is searched by virtual address, not
//! by file offset: [`BinaryInfo::virtual_address`] converts.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use object::{Object, ObjectSegment, ReadCache};

/// Where distributions install debug files.
pub const DEBUG_DIR: &str = "usr/lib/debug";
/// How long a debuginfod server may take to answer one request.
pub const DEBUGINFOD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest debug file fetched from debuginfod (the largest libraries'
/// debug info runs to gigabytes; they are not worth a node's bandwidth).
pub const DEBUGINFOD_MAX_BYTES: u64 = 256 << 20;
/// How long a build id that no server had is not asked for again.
pub const DEBUGINFOD_RETRY: Duration = Duration::from_secs(600);

/// What locating a binary's debug file needs from the binary itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinaryInfo {
    /// The GNU build id.
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: the debug file's name and CRC-32.
    pub debuglink: Option<(String, u32)>,
    /// Loadable segments: (file offset, file size, virtual address).
    pub segments: Vec<(u64, u64, u64)>,
}

impl BinaryInfo {
    /// Reads the build id, debug link and segments of the ELF file at
    /// `path` (headers and notes only, not the whole file).
    pub fn read(path: &Path) -> Option<BinaryInfo> {
        let cache = ReadCache::new(File::open(path).ok()?);
        let elf = object::File::parse(&cache).ok()?;
        Some(BinaryInfo {
            build_id: elf.build_id().ok().flatten().map(<[u8]>::to_vec),
            debuglink: elf
                .gnu_debuglink()
                .ok()
                .flatten()
                .and_then(|(name, crc)| Some((std::str::from_utf8(name).ok()?.to_string(), crc))),
            segments: elf
                .segments()
                .map(|s| {
                    let (offset, size) = s.file_range();
                    (offset, size, s.address())
                })
                .collect(),
        })
    }

    /// The virtual address (as linked) of file offset `offset`.
    pub fn virtual_address(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(start, size, _)| (*start..start + size).contains(&offset))
            .map(|(start, _, address)| address + (offset - start))
    }
}

/// The build id as lower-case hex.
pub fn hex(build_id: &[u8]) -> String {
    build_id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The debug file of a binary, searched for in the process' root `root`
/// (`/proc/PID/root`) and then on the host (`/`), or fetched through
/// `debuginfod`. `path` is the binary's path in the process' mount
/// namespace (its folder is where debug links point).
pub fn find(info: &BinaryInfo, path: &str, root: &Path, debuginfod: Option<&mut Debuginfod>) -> Option<PathBuf> {
    let roots = [root, Path::new("/")];
    if let Some(id) = info.build_id.as_deref().filter(|id| id.len() >= 2) {
        let relative = format!("{DEBUG_DIR}/.build-id/{:02x}/{}.debug", id[0], hex(&id[1..]));
        if let Some(found) = roots.iter().map(|r| r.join(&relative)).find(|p| p.is_file()) {
            return Some(found);
        }
    }
    if let Some((name, crc)) = &info.debuglink {
        let dir = Path::new(path).parent().unwrap_or(Path::new("/"));
        let dir = dir.strip_prefix("/").unwrap_or(dir);
        let candidates = [
            dir.join(name),
            dir.join(".debug").join(name),
            Path::new(DEBUG_DIR).join(dir).join(name),
        ];
        for root in roots {
            for candidate in &candidates {
                let full = root.join(candidate);
                // The link may name the binary itself (a self-referential
                // link, seen in the wild): the CRC check rules it out unless
                // the file really is its own debug file.
                if full.is_file() && file_crc32(&full) == Some(*crc) {
                    return Some(full);
                }
            }
        }
    }
    let id = info.build_id.as_deref()?;
    debuginfod?.fetch(id)
}

/// The CRC-32 (IEEE, as `.gnu_debuglink` stores it) of a file's content.
pub fn file_crc32(path: &Path) -> Option<u32> {
    let mut file = File::open(path).ok()?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => return Some(hasher.finalize()),
            Ok(n) => hasher.update(&buffer[..n]),
            Err(_) => return None,
        }
    }
}

/// A debuginfod client: debug files by build id from the servers in
/// `urls`, kept in `cache_dir` (`HEX.debug`) across restarts.
#[derive(Debug)]
pub struct Debuginfod {
    urls: Vec<String>,
    cache_dir: PathBuf,
    /// Build ids no server had, and when they were last asked for.
    misses: HashMap<Vec<u8>, Instant>,
}

impl Debuginfod {
    /// A client of `urls` (base URLs, as in `DEBUGINFOD_URLS`) caching in `cache_dir`.
    pub fn new(urls: Vec<String>, cache_dir: PathBuf) -> Self {
        Debuginfod {
            urls,
            cache_dir,
            misses: HashMap::new(),
        }
    }

    /// The cached or fetched debug file of `build_id`. Blocks while it
    /// downloads (up to [`DEBUGINFOD_TIMEOUT`] per server); a build id no
    /// server had is not asked for again for [`DEBUGINFOD_RETRY`].
    pub fn fetch(&mut self, build_id: &[u8]) -> Option<PathBuf> {
        let hex = hex(build_id);
        let cached = self.cache_dir.join(format!("{hex}.debug"));
        if cached.is_file() {
            return Some(cached);
        }
        if self
            .misses
            .get(build_id)
            .is_some_and(|t| t.elapsed() < DEBUGINFOD_RETRY)
        {
            return None;
        }
        for url in &self.urls {
            let url = format!("{}/buildid/{hex}/debuginfo", url.trim_end_matches('/'));
            match download(&url, &cached, build_id) {
                Ok(()) => {
                    tracing::debug!(%url, "fetched debug info");
                    self.misses.remove(build_id);
                    return Some(cached);
                }
                Err(error) => tracing::debug!(%url, %error, "no debug info from debuginfod"),
            }
        }
        self.misses.insert(build_id.to_vec(), Instant::now());
        None
    }
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or the server answered with an error status.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The answer was larger than [`DEBUGINFOD_MAX_BYTES`].
    #[error("larger than {DEBUGINFOD_MAX_BYTES} bytes")]
    TooLarge,
    /// The answer is not an ELF file with the requested build id.
    #[error("not the debug file of the requested build id")]
    WrongFile,
    /// Writing the cache failed.
    #[error("cannot write the cache: {0}")]
    Io(#[from] std::io::Error),
}

/// Downloads `url` into `to` (through a temporary file, so a partial
/// download is never taken for a debug file), checking its build id.
fn download(url: &str, to: &Path, build_id: &[u8]) -> Result<(), FetchError> {
    let dir = to.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let partial = to.with_extension("partial");
    let url = url.to_string();
    let target = partial.clone();
    // On its own thread with its own runtime: the symbolizing thread may
    // or may not be inside a tokio runtime.
    let result = std::thread::spawn(move || -> Result<(), FetchError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let client = reqwest::Client::builder().timeout(DEBUGINFOD_TIMEOUT).build()?;
            let mut response = client.get(&url).send().await?.error_for_status()?;
            if response.content_length().is_some_and(|n| n > DEBUGINFOD_MAX_BYTES) {
                return Err(FetchError::TooLarge);
            }
            let mut out = File::create(&target)?;
            let mut written = 0u64;
            while let Some(chunk) = response.chunk().await? {
                written += chunk.len() as u64;
                if written > DEBUGINFOD_MAX_BYTES {
                    return Err(FetchError::TooLarge);
                }
                out.write_all(&chunk)?;
            }
            Ok(())
        })
    })
    .join()
    .unwrap_or(Err(FetchError::WrongFile));
    let checked = result.and_then(|()| {
        let info = BinaryInfo::read(&partial).ok_or(FetchError::WrongFile)?;
        if info.build_id.as_deref() != Some(build_id) {
            return Err(FetchError::WrongFile);
        }
        std::fs::rename(&partial, to)?;
        Ok(())
    });
    if checked.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc() -> Option<PathBuf> {
        ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    }

    #[test]
    fn offsets_convert_to_virtual_addresses() {
        let info = BinaryInfo {
            segments: vec![(0, 0x1000, 0), (0x1000, 0x2000, 0x401000)],
            ..BinaryInfo::default()
        };
        assert_eq!(info.virtual_address(0x10), Some(0x10));
        assert_eq!(info.virtual_address(0x1234), Some(0x401234));
        assert_eq!(info.virtual_address(0x5000), None);
    }

    /// Debian's libc has a build id and a debug link; libc6-dbg installs
    /// the debug file under the build id. Both routes find the same file.
    #[test]
    fn libc_debug_file_is_found_by_build_id_and_by_debuglink() {
        let Some(libc) = libc() else { return };
        let info = BinaryInfo::read(&libc).expect("libc parses");
        let id = info.build_id.clone().expect("libc has a build id");
        let by_id = find(&info, libc.to_str().unwrap(), Path::new("/nonexistent"), None);
        let expected = PathBuf::from(format!(
            "/usr/lib/debug/.build-id/{:02x}/{}.debug",
            id[0],
            hex(&id[1..])
        ));
        if !expected.is_file() {
            eprintln!("skipped: libc6-dbg is not installed");
            return;
        }
        assert_eq!(by_id.as_deref(), Some(expected.as_path()));
        // Through the debug link only: a fake binary in a temporary root
        // whose link names a copy of the debug file beside it.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("opt/app/.debug")).unwrap();
        std::fs::copy(&expected, root.path().join("opt/app/.debug/app.debug")).unwrap();
        let crc = file_crc32(&expected).unwrap();
        let linked = BinaryInfo {
            debuglink: Some(("app.debug".into(), crc)),
            ..BinaryInfo::default()
        };
        let found = find(&linked, "/opt/app/app", root.path(), None);
        assert_eq!(found, Some(root.path().join("opt/app/.debug/app.debug")));
        // A wrong CRC is not a match.
        let wrong = BinaryInfo {
            debuglink: Some(("app.debug".into(), crc ^ 1)),
            ..BinaryInfo::default()
        };
        assert_eq!(find(&wrong, "/opt/app/app", root.path(), None), None);
    }

    /// A real HTTP server (std's TcpListener, answering like debuginfod)
    /// serves libc's debug file: fetched once, checked, cached; an
    /// unknown build id gets 404 and is not asked for again.
    #[test]
    fn debuginfod_fetches_checks_and_caches() {
        let Some(libc) = libc() else { return };
        let info = BinaryInfo::read(&libc).unwrap();
        let id = info.build_id.clone().unwrap();
        let debug = PathBuf::from(format!(
            "/usr/lib/debug/.build-id/{:02x}/{}.debug",
            id[0],
            hex(&id[1..])
        ));
        if !debug.is_file() {
            eprintln!("skipped: libc6-dbg is not installed");
            return;
        }
        let body = std::fs::read(&debug).unwrap();
        let body_len = body.len();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = std::sync::Arc::clone(&requests);
        let wanted = format!("/buildid/{}/debuginfo", hex(&id));
        let served = wanted.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut head = [0u8; 4096];
                let n = stream.read(&mut head).unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let path = line.split(' ').nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(path.clone());
                if path == served {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(&body);
                } else {
                    let _ =
                        stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        });
        let cache = tempfile::tempdir().unwrap();
        let mut client = Debuginfod::new(vec![format!("http://127.0.0.1:{port}/")], cache.path().to_path_buf());
        let fetched = client.fetch(&id).expect("fetched");
        assert_eq!(std::fs::read(&fetched).unwrap().len(), body_len);
        assert_eq!(client.fetch(&id), Some(fetched.clone()), "served from the cache");
        let unknown = [0xab; 20];
        assert_eq!(client.fetch(&unknown), None);
        assert_eq!(client.fetch(&unknown), None, "not asked again");
        // Through find(): no local file by this name, so debuginfod answers.
        let remote_only = BinaryInfo {
            build_id: Some(id.clone()),
            ..BinaryInfo::default()
        };
        let root = tempfile::tempdir().unwrap();
        let mut other = Debuginfod::new(vec![format!("http://127.0.0.1:{port}")], cache.path().join("b"));
        // Host /usr/lib/debug has the file too, so find() answers from it:
        // debuginfod is the last resort.
        assert_eq!(find(&remote_only, "/x", root.path(), Some(&mut other)), Some(debug));
        let requests = requests.lock().unwrap().clone();
        assert_eq!(
            requests,
            vec![wanted, format!("/buildid/{}/debuginfo", hex(&unknown))],
            "one request per build id"
        );
    }
}
