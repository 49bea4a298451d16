//! Node energy from RAPL (Running Average Power Limit) through the kernel's
//! powercap framework: `<sysfs_root>/class/powercap/intel-rapl:*`.
//!
//! Each zone directory has `name` (`package-0`, `core`, `uncore`, `dram`,
//! `psys`), `energy_uj` (a counter of microjoules that wraps) and
//! `max_energy_range_uj` (where it wraps). `/sys/class/powercap` lists every
//! zone and subzone flat (`intel-rapl:0`, `intel-rapl:0:0`, …), as links to
//! the nested device tree. AMD Zen CPUs appear under the same names
//! (Linux 5.8+). `intel-rapl-mmio:*` zones repeat the package zone on some
//! client CPUs and are skipped, so a package is not counted twice.
//!
//! `energy_uj` is readable by root only (since the PLATYPUS fix, 5.10 and
//! backports).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{read, read_u64, EnergyError};

/// Prefix of the RAPL zones in `class/powercap`.
const ZONE_PREFIX: &str = "intel-rapl:";

/// One powercap zone.
#[derive(Clone, Debug)]
pub struct RaplZone {
    /// Directory name, `intel-rapl:0:1`.
    pub id: String,
    /// The `component` attribute: `package`, `core`, `uncore`, `dram`, `psys`.
    pub component: String,
    energy_path: PathBuf,
    max_range_uj: u64,
    last_uj: u64,
}

/// Every RAPL zone of the node, with the counters last read.
#[derive(Clone, Debug)]
pub struct Rapl {
    zones: Vec<RaplZone>,
}

impl Rapl {
    /// The zones under `sysfs_root`, with their counters read now; `None`
    /// when the node has no RAPL zone (no powercap, a VM, another CPU).
    pub fn discover(sysfs_root: &Path) -> Result<Option<Rapl>, EnergyError> {
        let dir = sysfs_root.join("class/powercap");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(None);
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(ZONE_PREFIX))
            .collect();
        ids.sort();
        let mut zones = Vec::with_capacity(ids.len());
        for id in ids {
            let zone = dir.join(&id);
            let name = read(zone.join("name"))?;
            let energy_path = zone.join("energy_uj");
            zones.push(RaplZone {
                component: component(name.trim()),
                max_range_uj: read_u64(zone.join("max_energy_range_uj"))?,
                last_uj: read_u64(energy_path.clone())?,
                energy_path,
                id,
            });
        }
        Ok((!zones.is_empty()).then_some(Rapl { zones }))
    }

    /// The zones found.
    pub fn zones(&self) -> &[RaplZone] {
        &self.zones
    }

    /// The components, sorted, each once (several sockets share one).
    pub fn components(&self) -> Vec<String> {
        let mut out: Vec<String> = self.zones.iter().map(|z| z.component.clone()).collect();
        out.sort();
        out.dedup();
        out
    }

    /// Joules per component since the previous read (summed over sockets),
    /// in [`Rapl::components`] order.
    pub fn read(&mut self) -> Result<Vec<(String, f64)>, EnergyError> {
        let mut joules: BTreeMap<String, f64> = BTreeMap::new();
        for zone in &mut self.zones {
            let now = read_u64(zone.energy_path.clone())?;
            let delta = wrapping_delta(zone.last_uj, now, zone.max_range_uj);
            zone.last_uj = now;
            *joules.entry(zone.component.clone()).or_default() += delta as f64 / 1e6;
        }
        Ok(joules.into_iter().collect())
    }
}

/// Microjoules from `prev` to `now` of a counter that wraps to 0 after
/// `max` (`max_energy_range_uj`). A counter that went backwards wrapped
/// once: an interval shorter than a wrap (minutes at full power, hours
/// usually) cannot wrap twice.
pub fn wrapping_delta(prev: u64, now: u64, max: u64) -> u64 {
    if now >= prev {
        now - prev
    } else {
        max.saturating_sub(prev) + now
    }
}

/// `package-0` → `package`; the other names are kept as they are.
pub fn component(name: &str) -> String {
    match name.rsplit_once('-') {
        Some((base, n)) if !base.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => base.to_string(),
        _ => name.to_string(),
    }
}
