//! Node energy per interval and component, from the best source the node
//! has: RAPL for the CPU side when present, the power model otherwise; NVML
//! for GPUs when present. Each component says where its figure came from
//! (the `source` attribute: `rapl`, `nvml`, `model`).
//!
//! Idle energy: the model knows it (its idle watts). RAPL and NVML measure
//! only the total, so their idle power is estimated as the lowest power
//! seen since the source started (a running floor, an upper bound of the
//! true idle power that tightens as the node has quiet intervals).

use std::fmt;
use std::path::Path;

use sonde_core::event::SharedStr;

use super::error::EnergyError;
use super::model::{ModelMeter, PowerModel};
use super::nvml::Gpus;
use super::rapl::Rapl;

/// The `component` of the modelled CPU power.
pub const MODEL_COMPONENT: &str = "cpu";
/// The `component` of the GPUs.
pub const GPU_COMPONENT: &str = "gpu";

/// Where an energy figure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PowerSource {
    /// Measured by the CPU (powercap `intel-rapl`).
    Rapl,
    /// Measured by NVIDIA's driver.
    Nvml,
    /// Estimated from CPU utilisation.
    Model,
}

impl PowerSource {
    /// The `source` attribute value.
    pub const fn as_str(self) -> &'static str {
        match self {
            PowerSource::Rapl => "rapl",
            PowerSource::Nvml => "nvml",
            PowerSource::Model => "model",
        }
    }
}

impl fmt::Display for PowerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One component's energy over one interval.
#[derive(Clone, Debug, PartialEq)]
pub struct ComponentEnergy {
    /// `package`, `core`, `uncore`, `dram`, `psys`, `cpu` (model), `gpu`.
    pub component: SharedStr,
    /// Where the figure came from.
    pub source: PowerSource,
    /// Energy, J.
    pub joules: f64,
    /// The part of it the component draws idle, J (≤ `joules`).
    pub idle_joules: f64,
}

enum CpuMeter {
    Rapl(Rapl),
    Model(ModelMeter),
}

/// Every energy meter of the node.
pub struct Meters {
    cpu: CpuMeter,
    gpus: Option<Gpus>,
    components: Vec<(SharedStr, PowerSource)>,
    /// Lowest watts seen per component (measured ones only).
    floors: Vec<f64>,
}

impl fmt::Debug for Meters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meters")
            .field("components", &self.components)
            .finish_non_exhaustive()
    }
}

impl Meters {
    /// Finds the meters and takes their first reading. RAPL zones that
    /// exist but cannot be read (not root) fall back to the model, logged.
    pub fn open(sysfs_root: &Path, procfs_root: &Path, model: PowerModel, gpu: bool) -> Result<Self, EnergyError> {
        let rapl = match Rapl::discover(sysfs_root) {
            Ok(rapl) => rapl,
            Err(error) => {
                tracing::warn!(%error, "RAPL present but unreadable, using the power model");
                None
            }
        };
        let (cpu, mut components) = match rapl {
            Some(rapl) => {
                let components = rapl
                    .components()
                    .into_iter()
                    .map(|c| (SharedStr::from(c), PowerSource::Rapl))
                    .collect();
                (CpuMeter::Rapl(rapl), components)
            }
            None => (
                CpuMeter::Model(ModelMeter::new(procfs_root, model)?),
                vec![(SharedStr::from_static(MODEL_COMPONENT), PowerSource::Model)],
            ),
        };
        let gpus = if gpu {
            match Gpus::open() {
                Ok(gpus) => {
                    tracing::info!(devices = gpus.devices(), "GPU power from NVML");
                    components.push((SharedStr::from_static(GPU_COMPONENT), PowerSource::Nvml));
                    Some(gpus)
                }
                Err(why) => {
                    tracing::debug!(%why, "no GPU component");
                    None
                }
            }
        } else {
            None
        };
        let floors = vec![f64::INFINITY; components.len()];
        Ok(Meters {
            cpu,
            gpus,
            components,
            floors,
        })
    }

    /// The components, in the order [`Meters::read`] returns them.
    pub fn components(&self) -> &[(SharedStr, PowerSource)] {
        &self.components
    }

    /// Every component's energy since the previous read, `seconds` ago.
    pub fn read(&mut self, seconds: f64) -> Result<Vec<ComponentEnergy>, EnergyError> {
        let mut measured: Vec<(f64, Option<f64>)> = Vec::with_capacity(self.components.len());
        match &mut self.cpu {
            CpuMeter::Rapl(rapl) => measured.extend(rapl.read()?.into_iter().map(|(_, j)| (j, None))),
            CpuMeter::Model(model) => {
                let (joules, idle, _) = model.read(seconds)?;
                measured.push((joules, Some(idle)));
            }
        }
        if let Some(gpus) = &mut self.gpus {
            measured.push((gpus.read(seconds), None));
        }
        Ok(self
            .components
            .iter()
            .zip(measured)
            .zip(&mut self.floors)
            .map(|(((component, source), (joules, idle)), floor)| {
                let idle_joules = idle.unwrap_or_else(|| {
                    if seconds > 0.0 {
                        *floor = floor.min(joules / seconds);
                    }
                    (*floor * seconds).min(joules)
                });
                ComponentEnergy {
                    component: component.clone(),
                    source: *source,
                    joules,
                    idle_joules,
                }
            })
            .collect())
    }
}
