//! The power model, for nodes without RAPL (most cloud VMs): CPU power from
//! measured CPU utilisation, linear between an idle and a maximum power per
//! CPU, the method of Cloud Carbon Footprint (CCF):
//!
//! ```text
//! watts = cpus × (idle_watts_per_cpu + utilisation × (max_watts_per_cpu − idle_watts_per_cpu))
//! ```
//!
//! Utilisation is the busy share of all CPUs' time in `/proc/stat` over the
//! interval (everything but idle and iowait). The defaults are CCF's
//! averages for AWS, 0.74 W idle and 3.5 W at full load per vCPU, derived
//! from SPECpower_ssj2008 results of the instance families' processors
//! (<https://www.cloudcarbonfootprint.org/docs/methodology/#compute>);
//! CCF gives 0.71 / 4.26 W for GCP and 0.78 / 3.76 W for Azure. Teads'
//! TDP-based curve (idle ≈ 12 % of TDP, full ≈ 102 %, per thread = TDP /
//! threads) gives similar figures for a current server CPU: a 205 W,
//! 64-thread part is 0.38 W idle and 3.3 W full per thread.

use std::path::{Path, PathBuf};

use super::error::{read, EnergyError};

/// CCF's average minimum watts per vCPU (AWS).
pub const DEFAULT_IDLE_WATTS_PER_CPU: f64 = 0.74;
/// CCF's average maximum watts per vCPU (AWS).
pub const DEFAULT_MAX_WATTS_PER_CPU: f64 = 3.5;

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks, and how many
/// CPUs are online.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks of every state but idle and iowait.
    pub busy: u64,
    /// Ticks of every state.
    pub total: u64,
    /// `cpuN` lines: online CPUs.
    pub cpus: usize,
}

impl CpuTimes {
    /// Parses `/proc/stat`: `cpu user nice system idle iowait irq softirq
    /// steal guest guest_nice` (guest time is already in user).
    pub fn parse(text: &str) -> Option<CpuTimes> {
        let mut times = None;
        let mut cpus = 0;
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("cpu") => {
                    let v: Vec<u64> = fields.take(8).map(|f| f.parse().unwrap_or(0)).collect();
                    if v.len() < 4 {
                        return None;
                    }
                    let total: u64 = v.iter().sum();
                    let idle = v[3] + v.get(4).copied().unwrap_or(0);
                    times = Some((total - idle, total));
                }
                Some(name) if name.starts_with("cpu") => cpus += 1,
                _ => {}
            }
        }
        let (busy, total) = times?;
        Some(CpuTimes {
            busy,
            total,
            cpus: cpus.max(1),
        })
    }
}

/// Linear CPU power between idle and full load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerModel {
    /// Watts per CPU at 0 % utilisation.
    pub idle_watts_per_cpu: f64,
    /// Watts per CPU at 100 %.
    pub max_watts_per_cpu: f64,
}

impl PowerModel {
    /// Checks the two figures.
    pub fn new(idle_watts_per_cpu: f64, max_watts_per_cpu: f64) -> Result<Self, EnergyError> {
        if !idle_watts_per_cpu.is_finite() || idle_watts_per_cpu < 0.0 || !max_watts_per_cpu.is_finite() {
            return Err(EnergyError::Model("watts must be finite and not negative"));
        }
        if max_watts_per_cpu < idle_watts_per_cpu {
            return Err(EnergyError::Model("max_watts_per_cpu is below idle_watts_per_cpu"));
        }
        Ok(PowerModel {
            idle_watts_per_cpu,
            max_watts_per_cpu,
        })
    }

    /// (total, idle) joules of `cpus` CPUs at `utilisation` (0..=1) for `seconds`.
    pub fn energy(&self, cpus: usize, utilisation: f64, seconds: f64) -> (f64, f64) {
        let u = utilisation.clamp(0.0, 1.0);
        let idle = cpus as f64 * self.idle_watts_per_cpu * seconds;
        let dynamic = cpus as f64 * (self.max_watts_per_cpu - self.idle_watts_per_cpu) * u * seconds;
        (idle + dynamic, idle)
    }
}

/// The model driven by `/proc/stat`.
#[derive(Clone, Debug)]
pub struct ModelMeter {
    stat: PathBuf,
    model: PowerModel,
    last: CpuTimes,
}

impl ModelMeter {
    /// Reads `<procfs_root>/stat` once, as the start of the first interval.
    pub fn new(procfs_root: &Path, model: PowerModel) -> Result<Self, EnergyError> {
        let stat = procfs_root.join("stat");
        let last = read_times(&stat)?;
        Ok(ModelMeter { stat, model, last })
    }

    /// (total, idle) joules of the CPUs over the last `seconds`, and the
    /// utilisation that drove them.
    pub fn read(&mut self, seconds: f64) -> Result<(f64, f64, f64), EnergyError> {
        let now = read_times(&self.stat)?;
        let total = now.total.saturating_sub(self.last.total);
        let busy = now.busy.saturating_sub(self.last.busy);
        self.last = now;
        let utilisation = if total == 0 { 0.0 } else { busy as f64 / total as f64 };
        let (joules, idle) = self.model.energy(now.cpus, utilisation, seconds);
        Ok((joules, idle, utilisation))
    }
}

fn read_times(path: &Path) -> Result<CpuTimes, EnergyError> {
    let text = read(path.to_path_buf())?;
    CpuTimes::parse(&text).ok_or_else(|| EnergyError::Parse {
        path: path.to_path_buf(),
        what: "a `cpu` line",
        text: text.lines().next().unwrap_or("").to_string(),
    })
}
