//! GPU energy from NVML (`libnvidia-ml.so.1`, which nvml-wrapper opens with
//! dlopen at run time): a node without NVIDIA's driver has no such library
//! and simply has no GPU component.
//!
//! Per device: the energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
//! millijoules since the driver loaded, Volta and later) when it has one,
//! otherwise the power reading (`nvmlDeviceGetPowerUsage`, milliwatts)
//! times the interval.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;

/// The NVIDIA GPUs of the node.
pub struct Gpus {
    nvml: Nvml,
    /// Per device index: the energy counter last read, if it has one.
    last_mj: Vec<Option<u64>>,
}

impl std::fmt::Debug for Gpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpus").field("devices", &self.last_mj.len()).finish()
    }
}

/// Why there is no GPU component, for the log.
#[derive(Debug, thiserror::Error)]
#[error("no NVIDIA GPU power: {0}")]
pub struct NoGpu(String);

impl Gpus {
    /// Opens NVML and every device; `Err` says why there is none (no
    /// library, no driver, no device), which is normal on most nodes.
    pub fn open() -> Result<Gpus, NoGpu> {
        let nvml = Nvml::init().map_err(|e| NoGpu(describe(&e)))?;
        let count = nvml.device_count().map_err(|e| NoGpu(describe(&e)))?;
        if count == 0 {
            return Err(NoGpu("NVML sees no device".into()));
        }
        let mut last_mj = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = nvml.device_by_index(index).map_err(|e| NoGpu(describe(&e)))?;
            last_mj.push(device.total_energy_consumption().ok());
        }
        Ok(Gpus { nvml, last_mj })
    }

    /// Number of devices.
    pub fn devices(&self) -> usize {
        self.last_mj.len()
    }

    /// Joules of all devices together over the last `seconds`. A device
    /// that fails to answer counts 0 for this interval (and is logged).
    pub fn read(&mut self, seconds: f64) -> f64 {
        let mut joules = 0.0;
        for (index, last) in self.last_mj.iter_mut().enumerate() {
            let device = match self.nvml.device_by_index(index as u32) {
                Ok(device) => device,
                Err(error) => {
                    tracing::warn!(gpu = index, error = %describe(&error), "cannot open GPU");
                    continue;
                }
            };
            match (*last, device.total_energy_consumption()) {
                (Some(prev), Ok(now)) => {
                    joules += now.saturating_sub(prev) as f64 / 1e3;
                    *last = Some(now);
                }
                _ => match device.power_usage() {
                    Ok(milliwatts) => joules += milliwatts as f64 / 1e3 * seconds,
                    Err(error) => tracing::warn!(gpu = index, error = %describe(&error), "cannot read GPU power"),
                },
            }
        }
        joules
    }
}

fn describe(error: &NvmlError) -> String {
    match error {
        NvmlError::LibloadingError(e) => format!("libnvidia-ml not loadable ({e})"),
        other => other.to_string(),
    }
}
