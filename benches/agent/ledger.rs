//! The overhead ledger: what each request costs with the agent off and on,
//! at fixed request rates (`common::rate`), in CPU time rather than
//! throughput. Per request: the eBPF run time of every program the agent
//! loaded (`BPF_ENABLE_STATS`), the agent's own user + system CPU (its
//! cgroup), and the workload's CPU (nginx's worker and wrk) with the agent
//! off and on. eBPF programs run in the workload's threads, so their time
//! is inside the workload's CPU too; the agent's whole cost per request is
//! its own CPU plus what the workload's CPU grew by.

use std::time::Instant;

use anyhow::Result;

use crate::common::process::Measured;
use crate::common::rate::{Workload, WORKLOADS};
use crate::common::web::{self, Load, Nginx};

/// One workload's run under one agent mode.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Requests/s reached (context only: the rate is fixed).
    pub rps: f64,
    /// The workload's (nginx worker + wrk) CPU per request, µs.
    pub workload_us: f64,
    /// The agent's own CPU per request, µs (0 with the agent off).
    pub agent_us: f64,
    /// Its eBPF programs' run time per request, µs (0 with the agent off).
    pub bpf_us: f64,
}

/// The loads reaching each workload's rate here, calibrated with no agent.
pub fn calibrate(nginx: &Nginx) -> Result<Vec<Load>> {
    WORKLOADS
        .iter()
        .map(|w: &Workload| {
            let load = w.calibrate(nginx)?;
            eprintln!("ledger: {} with {} connections", w.label, load.connections);
            Ok(load)
        })
        .collect()
}

/// Runs every workload once for `seconds`, with `agent` (statistics on,
/// so that its programs' run time is counted) or with none.
pub fn measure(nginx: &Nginx, loads: &[Load], agent: Option<&Measured>, seconds: u32) -> Result<Vec<Sample>> {
    let _stats = agent.map(|_| sonde_ebpf::stats::enable()).transpose()?;
    let mut samples = Vec::with_capacity(loads.len());
    for load in loads {
        let start = agent.map(Measured::read);
        let began = Instant::now();
        let run = web::wrk(nginx, *load, seconds)?;
        let requests = run.requests.max(1.0);
        let mut sample = Sample {
            rps: run.rps,
            workload_us: run.cpu_per_request * 1e6,
            ..Sample::default()
        };
        if let (Some(agent), Some(start)) = (agent, start) {
            let end = agent.read();
            sample.agent_us = (end.cpu_ns - start.cpu_ns) as f64 / 1e3 / requests;
            sample.bpf_us = (end.bpf_ns - start.bpf_ns) as f64 / 1e3 / requests;
        }
        eprintln!(
            "ledger: {:>6.0} req/s in {:.1} s: workload {:.1} µs/req, agent {:.2} µs/req, eBPF {:.2} µs/req",
            run.rps,
            began.elapsed().as_secs_f64(),
            sample.workload_us,
            sample.agent_us,
            sample.bpf_us
        );
        samples.push(sample);
    }
    Ok(samples)
}
