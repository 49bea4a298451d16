//! A tiny initramfs: static busybox, the kernel's own modules for
//! virtio-pci, virtiofs and loop devices (with their dependencies, in
//! load order; a module built into the kernel is simply not found), and an
//! /init that loads them, mounts the host's root read-only over virtiofs
//! and switches to the guest script. Older kernels (5.10, 6.1) have
//! virtiofs only as a module, so the root cannot be mounted without it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The modules the guest needs; their dependencies come along.
const MODULES: &[&str] = &["virtio_pci", "virtiofs", "loop"];

/// Where the host's static busybox is (package busybox-static).
const BUSYBOX: &str = "/bin/busybox";

const INIT: &str = r#"#!/bin/busybox sh
# Stage one: load modules, mount the host's root, hand over to $SONDE_INIT.
for m in $(/bin/busybox cat /modules/order); do
  /bin/busybox insmod /modules/$m || echo "initramfs: insmod $m failed"
done
/bin/busybox mount -t virtiofs -o ro rootfs /newroot || { echo "initramfs: cannot mount the root"; /bin/busybox poweroff -f; }
exec /bin/busybox switch_root /newroot "$SONDE_INIT"
"#;

/// Builds `out` for the kernel whose modules are in `modules`.
pub fn build(modules: &Path, out: &Path) -> Result<()> {
    let index = index(modules)?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in MODULES {
        add(name, &index, &mut seen, &mut order)?;
    }
    let stage = out.with_extension("d");
    let _ = std::fs::remove_dir_all(&stage);
    for dir in ["bin", "modules", "newroot", "proc"] {
        std::fs::create_dir_all(stage.join(dir))?;
    }
    std::fs::copy(BUSYBOX, stage.join("bin/busybox")).context("no static busybox (apt-get install busybox-static)")?;
    let mut names = Vec::new();
    for (i, path) in order.iter().enumerate() {
        let name = format!("{i:02}-{}.ko", module_name(path));
        decompress(path, &stage.join("modules").join(&name))?;
        names.push(name);
    }
    std::fs::write(stage.join("modules/order"), names.join("\n") + "\n")?;
    write_executable(&stage.join("init"), INIT)?;
    let file = std::fs::File::create(out)?;
    let status = Command::new("sh")
        .args(["-c", "find . | cpio -o -H newc --quiet"])
        .current_dir(&stage)
        .stdout(file)
        .status()
        .context("cannot run cpio (apt-get install cpio)")?;
    std::fs::remove_dir_all(&stage)?;
    if !status.success() {
        bail!("cpio failed");
    }
    Ok(())
}

/// Writes an executable script.
pub fn write_executable(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `foo-bar.ko.xz` → `foo_bar` (module names use `_`, files either).
fn module_name(path: &Path) -> String {
    let file = path.file_name().unwrap_or_default().to_string_lossy();
    file.split(".ko").next().unwrap_or_default().replace('-', "_")
}

/// Every module file under `dir`.
fn index(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("kernel")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(".ko") {
                out.push(path);
            }
        }
    }
    Ok(out)
}

/// Adds `name` after its dependencies (`modinfo -F depends`).
fn add(name: &str, index: &[PathBuf], seen: &mut HashSet<String>, order: &mut Vec<PathBuf>) -> Result<()> {
    let name = name.replace('-', "_");
    if !seen.insert(name.clone()) {
        return Ok(());
    }
    let Some(path) = index.iter().find(|p| module_name(p) == name) else {
        return Ok(()); // built in
    };
    let output = Command::new("modinfo")
        .args(["-F", "depends"])
        .arg(path)
        .output()
        .context("cannot run modinfo (apt-get install kmod)")?;
    for dep in String::from_utf8_lossy(&output.stdout)
        .trim()
        .split(',')
        .filter(|d| !d.is_empty())
    {
        add(dep, index, seen, order)?;
    }
    order.push(path.clone());
    Ok(())
}

/// busybox's insmod wants plain ELF: newer Debian kernels compress modules.
fn decompress(from: &Path, to: &Path) -> Result<()> {
    let tool = match from.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => {
            std::fs::copy(from, to)?;
            return Ok(());
        }
    };
    let status = Command::new(tool)
        .arg("-dc")
        .arg(from)
        .stdout(std::fs::File::create(to)?)
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run {tool}"))?;
    if !status.success() {
        bail!("{tool} -dc {} failed", from.display());
    }
    Ok(())
}
