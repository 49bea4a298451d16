//! Attribution: who gets each interval's energy, and the running totals.
//!
//! The rule, per component and interval:
//!
//! ```text
//! E_p = E × t_p / T
//! ```
//!
//! where `E` is the component's energy over the interval, `t_p` the on-CPU
//! time of process `p` in it (kernel-measured) and `T` the on-CPU time of
//! all processes (the idle task excluded). Both parts of `E` follow the
//! same rule: the dynamic part because it is what running costs, the idle
//! part because a node is kept powered for the work it runs, so it is
//! shared by that work, in proportion to its use (the usage-based allocation
//! of the GHG Protocol's ICT guidance, and what Cloud Carbon Footprint does
//! per workload). So the processes' energy adds up to the node's exactly
//! (conservation), and a process' share of the idle energy is reported at
//! node level only (`sonde_node_idle_energy_joules_total`). An interval in
//! which no process ran (`T = 0`) is attributed to no one.

use std::collections::HashMap;

use super::bpf::{EnergyKey, TaskTime};
use sonde_core::event::SharedStr;

use super::meter::ComponentEnergy;

/// What the ledger knows of one process (one tgid in one cgroup).
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// Its name when the kernel first saw it.
    pub comm: SharedStr,
    /// On-CPU time since the program attached, ns (the kernel's total).
    pub cpu_ns: u64,
    /// On-CPU time in the last interval, ns.
    pub last_cpu_ns: u64,
    /// Energy attributed since the source started, J, per component.
    pub joules: Vec<f64>,
}

/// Running totals of the node and of every process.
#[derive(Debug, Default)]
pub struct Ledger {
    processes: HashMap<EnergyKey, Process>,
    /// Node energy per component since start, J.
    pub node_joules: Vec<f64>,
    /// The idle part of it, J.
    pub node_idle_joules: Vec<f64>,
}

/// One interval's attribution, for tests and logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Round {
    /// On-CPU time of all processes in the interval, ns (`T`).
    pub cpu_ns: u64,
    /// Idle-task time in the interval, ns (all CPUs).
    pub idle_ns: u64,
    /// Per component: energy attributed to no process (only when `T = 0`).
    pub unattributed: Vec<f64>,
}

impl Ledger {
    /// A ledger for `components` components, with the kernel's totals at
    /// start (`tasks`) as the baseline: only time after them is attributed.
    pub fn new(components: usize, tasks: &[TaskTime]) -> Self {
        let mut ledger = Ledger {
            processes: HashMap::new(),
            node_joules: vec![0.0; components],
            node_idle_joules: vec![0.0; components],
        };
        for task in tasks {
            ledger.process(task).cpu_ns = task.on_cpu_ns;
        }
        ledger
    }

    fn process(&mut self, task: &TaskTime) -> &mut Process {
        let components = self.node_joules.len();
        self.processes.entry(task.key).or_insert_with(|| Process {
            comm: SharedStr::from(task.comm.clone()),
            cpu_ns: 0,
            last_cpu_ns: 0,
            joules: vec![0.0; components],
        })
    }

    /// Attributes one interval's `energy` (one entry per component, always
    /// in the same order) by the kernel's running totals `tasks`.
    pub fn attribute(&mut self, tasks: &[TaskTime], energy: &[ComponentEnergy]) -> Round {
        let mut round = Round {
            unattributed: vec![0.0; energy.len()],
            ..Round::default()
        };
        for task in tasks {
            let process = self.process(task);
            // A re-created entry (the tgid was reused after a prune) starts from 0.
            let delta = task.on_cpu_ns.checked_sub(process.cpu_ns).unwrap_or(task.on_cpu_ns);
            process.cpu_ns = task.on_cpu_ns;
            process.last_cpu_ns = delta;
            if task.key.tgid == 0 {
                round.idle_ns += delta;
            } else {
                round.cpu_ns += delta;
            }
        }
        for (c, component) in energy.iter().enumerate() {
            self.node_joules[c] += component.joules;
            self.node_idle_joules[c] += component.idle_joules;
            if round.cpu_ns == 0 {
                round.unattributed[c] = component.joules;
            }
        }
        if round.cpu_ns > 0 {
            let total = round.cpu_ns as f64;
            for (key, process) in &mut self.processes {
                if key.tgid == 0 || process.last_cpu_ns == 0 {
                    continue;
                }
                let share = process.last_cpu_ns as f64 / total;
                for (joules, component) in process.joules.iter_mut().zip(energy) {
                    *joules += component.joules * share;
                }
            }
        }
        round
    }

    /// Every process (not the idle task) that ran in the last interval.
    pub fn active(&self) -> impl Iterator<Item = (&EnergyKey, &Process)> {
        self.processes
            .iter()
            .filter(|(key, p)| key.tgid != 0 && p.last_cpu_ns > 0)
    }

    /// Every process known, the idle task included.
    pub fn processes(&self) -> &HashMap<EnergyKey, Process> {
        &self.processes
    }

    /// Forgets processes that exited (after their last totals were emitted).
    pub fn forget(&mut self, keys: &[EnergyKey]) {
        for key in keys {
            self.processes.remove(key);
        }
    }
}
