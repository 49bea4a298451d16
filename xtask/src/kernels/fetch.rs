//! Kernel images from Debian's archive, without touching the host's apt
//! configuration or /boot: a private apt state per suite under
//! target/kernels/apt/, `apt-get download` of the image package the
//! suite's meta package points to today, `dpkg-deb -x` into
//! target/kernels/<kernel>/root/. Cached: a kernel is downloaded again only
//! when the meta package moves to a new ABI.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{Kernel, CACHE, KEYRING};

/// An unpacked kernel: its image and its modules.
#[derive(Debug)]
pub struct Unpacked {
    /// The concrete package and its version
    /// (`linux-image-6.1.0-56-cloud-amd64 6.1.192-2`), for the report.
    pub package: String,
    /// The bzImage.
    pub vmlinuz: PathBuf,
    /// `…/lib/modules/<release>`.
    pub modules: PathBuf,
}

/// A private apt configuration for one suite.
struct Apt {
    dir: PathBuf,
}

impl Apt {
    fn new(suite: &str, sources: &str) -> Result<Apt> {
        let dir = Path::new(CACHE).join("apt").join(suite);
        for sub in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::write(
            dir.join("sources.list"),
            format!("{}\n", sources.replace("KEYRING", KEYRING)),
        )?;
        Ok(Apt {
            dir: std::fs::canonicalize(dir)?,
        })
    }

    /// apt-get/apt-cache options that replace every host path apt would use.
    fn options(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            "-oDir::Etc::SourceParts=/nonexistent".to_string(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            // Downloads land in a root-owned cache that _apt cannot write.
            "-oAPT::Sandbox::User=root".to_string(),
            "-qq".to_string(),
        ]
    }

    fn run(&self, tool: &str, args: &[&str], cwd: &Path) -> Result<String> {
        let output = Command::new(tool)
            .args(self.options())
            .args(args)
            .current_dir(cwd)
            .output()
            .with_context(|| format!("cannot run {tool}"))?;
        if !output.status.success() {
            bail!(
                "{tool} {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The packages `package` depends on.
    fn depends(&self, package: &str) -> Result<Vec<String>> {
        let text = self.run(
            "apt-cache",
            &["depends", "--no-recommends", "--no-suggests", package],
            &self.dir,
        )?;
        Ok(text
            .lines()
            .filter_map(|l| l.trim().trim_start_matches('|').strip_prefix("Depends: "))
            .filter(|p| !p.starts_with('<'))
            .map(str::to_string)
            .collect())
    }
}

/// Downloads (unless cached) and unpacks `kernel`.
pub fn fetch(kernel: &Kernel) -> Result<Unpacked> {
    let apt = Apt::new(kernel.suite, kernel.sources)?;
    if let Err(error) = apt.run("apt-get", &["update"], &apt.dir) {
        // Offline: the cached index (and image) still work.
        eprintln!(
            "xtask: apt-get update for {} failed, using the cached index: {error:#}",
            kernel.suite
        );
    }
    // The meta package names the current ABI; newer Debian kernels split
    // the image into linux-binary-* and linux-modules-* packages.
    let package = apt
        .depends(kernel.meta)?
        .into_iter()
        .find(|p| p.starts_with("linux-image-") && p.ends_with(kernel.flavour) && p != kernel.meta)
        .with_context(|| format!("{} depends on no linux-image package in {}", kernel.meta, kernel.suite))?;
    let dir = Path::new(CACHE).join(kernel.name);
    let root = dir.join("root");
    let stamp = dir.join("package");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(package.as_str()) {
        let mut packages = vec![package.clone()];
        packages.extend(
            apt.depends(&package)?
                .into_iter()
                .filter(|p| p.starts_with("linux-binary-") || p.starts_with("linux-modules-")),
        );
        eprintln!("xtask: kernel {}: downloading {}", kernel.name, packages.join(" "));
        let _ = std::fs::remove_dir_all(&dir);
        let debs = dir.join("debs");
        std::fs::create_dir_all(&debs)?;
        let args: Vec<&str> = std::iter::once("download")
            .chain(packages.iter().map(String::as_str))
            .collect();
        apt.run("apt-get", &args, &std::fs::canonicalize(&debs)?)?;
        let mut version = String::new();
        for deb in std::fs::read_dir(&debs)? {
            let deb = deb?.path();
            // NAME_VERSION_ARCH.deb
            let file = deb.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if let Some(v) = file.strip_prefix(&format!("{package}_")) {
                version = v.split('_').next().unwrap_or_default().to_string();
            }
            let status = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root).status()?;
            if !status.success() {
                bail!("dpkg-deb -x {} failed", deb.display());
            }
        }
        std::fs::remove_dir_all(&debs)?;
        std::fs::write(&stamp, &package)?;
        std::fs::write(dir.join("version"), &version)?;
    }
    let version = std::fs::read_to_string(dir.join("version")).unwrap_or_default();
    locate(&root, format!("{package} {version}"))
}

/// Finds the image and module tree in an unpacked package (Debian moved
/// them from /boot and /lib to /usr/lib/modules/<release>/).
fn locate(root: &Path, package: String) -> Result<Unpacked> {
    for base in ["usr/lib/modules", "lib/modules"] {
        let Ok(entries) = std::fs::read_dir(root.join(base)) else {
            continue;
        };
        for entry in entries {
            let modules = std::fs::canonicalize(entry?.path())?;
            let release = modules.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let vmlinuz = [modules.join("vmlinuz"), root.join(format!("boot/vmlinuz-{release}"))]
                .into_iter()
                .find(|p| p.exists());
            if let Some(vmlinuz) = vmlinuz {
                let vmlinuz = std::fs::canonicalize(vmlinuz)?;
                return Ok(Unpacked {
                    package,
                    vmlinuz,
                    modules,
                });
            }
        }
    }
    bail!("no vmlinuz in {} ({package})", root.display())
}
