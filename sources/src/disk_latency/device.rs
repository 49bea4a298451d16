//! Disk names from kernel device numbers, via sysfs
//! (`/sys/dev/block/MAJ:MIN/uevent`, `DEVNAME=`).

use std::collections::HashMap;

use sonde_core::event::SharedStr;

/// Attribute: the disk's kernel name (`vda`, `nvme0n1`).
pub const DEVICE: &str = "device";
/// Attribute: `read`, `write`, `flush`, `discard` or `other`.
pub const OPERATION: &str = "operation";

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
