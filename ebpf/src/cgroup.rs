//! Where the cgroup v2 hierarchy is, for programs attached to its root
//! (cgroup_skb, cgroup/sock_create). Read from `/proc/self/mounts`; on a
//! node with cgroup v1 only, sonde mounts a cgroup2 hierarchy of its own
//! (every process belongs to its root, so programs there see everything).
//! Kubernetes nodes on cgroup v2 (the default since 1.25 with systemd 247+)
//! have it at `/sys/fs/cgroup`; hybrid ones at `/sys/fs/cgroup/unified`.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// Where sonde mounts cgroup2 when no one has.
pub const OWN_CGROUP2: &str = "/run/sonde/cgroup2";

/// The root of the cgroup v2 hierarchy, mounting one at [`OWN_CGROUP2`]
/// when there is none (needs CAP_SYS_ADMIN).
pub fn cgroup2_root() -> io::Result<PathBuf> {
    if let Some(path) = crate::system::find_mount("cgroup2") {
        return Ok(path);
    }
    std::fs::create_dir_all(OWN_CGROUP2)?;
    mount_cgroup2(Path::new(OWN_CGROUP2))?;
    tracing::info!(path = OWN_CGROUP2, "mounted cgroup2");
    Ok(PathBuf::from(OWN_CGROUP2))
}

fn mount_cgroup2(path: &Path) -> io::Result<()> {
    let fs = CString::new("cgroup2").map_err(io::Error::other)?;
    let target = CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
    // SAFETY: both strings are NUL-terminated and outlive the call; cgroup2
    // takes no mount data, so a null data pointer is allowed.
    let rc = unsafe { libc::mount(fs.as_ptr(), target.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The cgroup v2 ids (inode numbers) of `paths`, relative to the v2 root,
/// for a policy of `object`'s `program`: a path that cannot be read is a
/// load error naming it.
pub fn v2_ids(paths: &[String], object: &'static str, program: &'static str) -> Result<Vec<u64>, crate::LoadError> {
    use std::os::unix::fs::MetadataExt;
    let error = |what: &str, error: io::Error| crate::LoadError::Attach {
        object,
        program,
        attach_point: format!("cgroup filter: cannot read {what}"),
        source: Box::new(aya::programs::ProgramError::IOError(error)),
    };
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let root = cgroup2_root().map_err(|e| error("the cgroup v2 root", e))?;
    paths
        .iter()
        .map(|path| {
            let dir = root.join(path.trim_start_matches('/'));
            std::fs::metadata(&dir)
                .map(|m| m.ino())
                .map_err(|e| error(&dir.display().to_string(), e))
        })
        .collect()
}
