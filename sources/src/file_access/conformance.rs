//! The kernel check of `file_access` (the kernel matrix and
//! `tests/bpf_file_access.rs` run it): with a policy of one new directory,
//! this process opens files there through an absolute name, a relative
//! name, a symlink and a directory fd, opens as many files elsewhere, and
//! fails one open there; exactly the opens under the directory are
//! reported, under their real path, and the failure with `ENOENT`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sonde_core::event::Event;
use sonde_ebpf::conformance::{ensure, CheckError};

use super::bpf::FA_STAT_FILTERED_PATH;
use super::collect::{drain, Collector, ERROR, PATH};
use super::config::{FileAccessSourceConfig, Match};
use crate::clock::Clock;

/// Opens of each kind.
const EACH: usize = 8;

fn open(path: &Path, dirfd: i32, flags: i32) -> i32 {
    let name = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
    // SAFETY: a valid NUL-terminated name; the fd returned is closed by the caller.
    unsafe { libc::openat(dirfd, name.as_ptr(), flags, 0o644) }
}

fn close(fd: i32) {
    if fd >= 0 {
        // SAFETY: an fd this process opened and owns.
        unsafe { libc::close(fd) };
    }
}

/// Runs the check; on success, what the source saw, in one line.
pub fn check() -> Result<String, CheckError> {
    let dir = std::env::temp_dir().join(format!("sonde-file-access-{}", std::process::id()));
    let workload = CheckError::workload;
    std::fs::create_dir_all(dir.join("sub")).map_err(workload("create a directory"))?;
    let target = dir.join("sub/target");
    std::fs::write(&target, b"").map_err(workload("create a file"))?;
    let _ = std::fs::remove_file(dir.join("link"));
    std::os::unix::fs::symlink(&target, dir.join("link")).map_err(workload("make a symlink"))?;
    let elsewhere = std::env::temp_dir().join(format!("sonde-file-access-outside-{}", std::process::id()));
    std::fs::write(&elsewhere, b"").map_err(workload("create a file"))?;
    let config = FileAccessSourceConfig {
        matching: Match {
            path_prefix: vec![dir.display().to_string()],
            ..Match::default()
        },
        dedup_window: std::time::Duration::ZERO,
        rate_limit: 0,
        include_self: true,
        ..FileAccessSourceConfig::default()
    };
    let mut collector = Collector::load_with_labels(&config, "conformance".into(), &[])?;
    let mut ring = collector
        .programs_mut()
        .take_events()
        .ok_or_else(|| CheckError::Implausible("no ring buffer".to_string()))?;
    let filtered_before = collector.programs_mut().stats()?.get(FA_STAT_FILTERED_PATH);

    let sub = open(&dir.join("sub"), libc::AT_FDCWD, libc::O_RDONLY | libc::O_DIRECTORY);
    for _ in 0..EACH {
        close(open(&target, libc::AT_FDCWD, libc::O_RDONLY));
        close(open(&dir.join("link"), libc::AT_FDCWD, libc::O_WRONLY));
        close(open(Path::new("target"), sub, libc::O_RDWR));
        close(open(&elsewhere, libc::AT_FDCWD, libc::O_RDONLY));
    }
    close(sub);
    let missing = open(&dir.join("missing"), libc::AT_FDCWD, libc::O_RDONLY);
    close(missing);

    let clock = Clock::now();
    let pid = i64::from(std::process::id());
    let records: Vec<Event> = drain(&mut ring)
        .iter()
        .filter(|e| i64::from(e.pid) == pid)
        .map(|e| collector.record(e, &clock))
        .collect();
    let filtered = collector.programs_mut().stats()?.get(FA_STAT_FILTERED_PATH) - filtered_before;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&elsewhere);

    let field = |e: &Event, name: &str| match e {
        Event::Log(log) => log.fields.get(name).and_then(|v| v.as_str()).map(str::to_string),
        _ => None,
    };
    let target = target.display().to_string();
    let to_target = records
        .iter()
        .filter(|e| field(e, PATH).as_deref() == Some(target.as_str()))
        .count();
    let failed: Vec<String> = records.iter().filter_map(|e| field(e, ERROR)).collect();
    ensure(to_target == 3 * EACH, || {
        format!(
            "{to_target} opens of {target} reported, made {} (absolute, symlink, dirfd): {records:?}",
            3 * EACH
        )
    })?;
    ensure(failed == ["ENOENT"], || format!("failed opens reported: {failed:?}"))?;
    // And the open of the directory `sub` for the directory fd.
    ensure(records.len() == 3 * EACH + 2, || {
        format!("{} records for this process, expected {}", records.len(), 3 * EACH + 2)
    })?;
    // Everything else this process (and the node) opened was filtered.
    ensure(filtered >= EACH as u64, || {
        format!("{filtered} opens filtered by path, this process made {EACH} elsewhere")
    })?;
    let object = if collector.programs_mut().reads_args_at_exit() {
        "exit-only programs"
    } else {
        "entry and exit programs"
    };
    Ok(format!(
        "{to_target} opens of the watched file reported under its real path, 1 ENOENT, {filtered} filtered by path ({object})"
    ))
}
