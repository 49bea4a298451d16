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
