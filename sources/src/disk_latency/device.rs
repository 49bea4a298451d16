//! Disk names from kernel device numbers, via sysfs
//! (`/sys/dev/block/MAJ:MIN/uevent`, `DEVNAME=`).

use std::collections::HashMap;

use sonde_core::event::{Attributes, SharedStr};

/// Attribute: the disk's kernel name (`vda`, `nvme0n1`).
pub const DEVICE: &str = "system.device";
/// Attribute of reads and writes: `read` or `write` (OpenTelemetry's
/// `disk.io.direction`, whose only values those are).
pub const DIRECTION: &str = "disk.io.direction";
/// Attribute of the other requests: `flush`, `discard` or `other`, which
/// have no direction.
pub const OPERATION: &str = "sonde.disk.operation";

/// The attribute a request's operation goes under: [`DIRECTION`] for
/// `read` and `write`, [`OPERATION`] for the rest.
pub fn operation_key(operation: &str) -> &'static str {
    match operation {
        "read" | "write" => DIRECTION,
        _ => OPERATION,
    }
}

/// The operation of a disk metric's `attributes`, whichever key holds it.
pub fn operation_of(attributes: &Attributes) -> Option<&str> {
    attributes
        .get(DIRECTION)
        .or_else(|| attributes.get(OPERATION))
        .and_then(|v| v.as_str())
}

/// The kernel name of block device `major:minor`, if sysfs knows it.
pub fn device_name(major: u32, minor: u32) -> Option<String> {
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent")).ok()?;
    parse_uevent(&uevent)
}

pub(super) fn parse_uevent(uevent: &str) -> Option<String> {
    uevent
        .lines()
        .find_map(|line| line.strip_prefix("DEVNAME="))
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// Device names, looked up again each round (a device number can be
/// reused, as loop devices are), keeping the last known name of a device
/// that went away, and `MAJ:MIN` for one never named.
#[derive(Debug, Default)]
pub(super) struct DeviceNames {
    names: HashMap<u32, SharedStr>,
}

impl DeviceNames {
    /// The name of kernel dev_t `dev` (`major << 20 | minor`).
    pub fn name(&mut self, dev: u32, major: u32, minor: u32) -> SharedStr {
        match device_name(major, minor) {
            Some(name) => {
                let entry = self.names.entry(dev).or_insert_with(|| SharedStr::from(name.clone()));
                if entry.as_ref() != name {
                    *entry = SharedStr::from(name);
                }
                entry.clone()
            }
            None => self
                .names
                .entry(dev)
                .or_insert_with(|| SharedStr::from(format!("{major}:{minor}")))
                .clone(),
        }
    }
}
