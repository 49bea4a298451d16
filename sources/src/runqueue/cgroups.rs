//! The cgroup v2 tree: ids (the inode number of each cgroup's directory,
//! what the kernel's `kn->id` and `bpf_get_current_cgroup_id()` return) to
//! paths, for the `cgroup.path` attribute, for forgetting removed cgroups,
//! and for the `cgroups` filter (a path and everything below it).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Directories walked at most: a bound on the cost of one scan.
pub const MAX_CGROUPS_SCANNED: usize = 100_000;

/// The cgroups found under the v2 root, by id.
#[derive(Clone, Debug, Default)]
pub struct CgroupTree {
    paths: HashMap<u64, String>,
}

impl CgroupTree {
    /// Walks the hierarchy mounted at `root` (`/` is the root cgroup).
    pub fn scan(root: &Path) -> CgroupTree {
        let mut paths = HashMap::new();
        let mut todo: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), "/".to_string())];
        while let Some((dir, path)) = todo.pop() {
            if paths.len() >= MAX_CGROUPS_SCANNED {
                break;
            }
            let Ok(meta) = std::fs::metadata(&dir) else { continue };
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            paths.insert(meta.ino(), path.clone());
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let child = if path == "/" {
                        format!("/{name}")
                    } else {
                        format!("{path}/{name}")
                    };
                    todo.push((entry.path(), child));
                }
            }
        }
        CgroupTree { paths }
    }

    /// A tree from known (id, path) pairs (tests).
    pub fn from_paths(pairs: impl IntoIterator<Item = (u64, String)>) -> CgroupTree {
        CgroupTree {
            paths: pairs.into_iter().collect(),
        }
    }

    /// The path of cgroup `id`, when it exists.
    pub fn path(&self, id: u64) -> Option<&str> {
        self.paths.get(&id).map(String::as_str)
    }

    /// Whether cgroup `id` exists.
    pub fn contains(&self, id: u64) -> bool {
        self.paths.contains_key(&id)
    }

    /// The ids of the cgroups at or below any of `prefixes`.
    pub fn under(&self, prefixes: &[String]) -> HashSet<u64> {
        self.paths
            .iter()
            .filter(|(_, path)| prefixes.iter().any(|p| is_under(path, p)))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Whether cgroup path `path` is `parent` or below it.
pub fn is_under(path: &str, parent: &str) -> bool {
    let parent = parent.trim_end_matches('/');
    parent.is_empty() || path == parent || path.strip_prefix(parent).is_some_and(|rest| rest.starts_with('/'))
}
