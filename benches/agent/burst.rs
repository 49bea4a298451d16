//! Memory under a connection storm (issue 23's target: VmHWM ≤ 48 MiB):
//! the agent with every source on, after its warm-up, while wrk opens a
//! new connection per request to nginx as fast as it can for a while
//! (150k connections in 15 s on the machine that set the target). The
//! agent's peak resident memory before and after, and its resident memory
//! a few seconds later (what it keeps once the burst is over).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::common::web::{self, Load, Nginx};
use crate::modes::{Agent, Mode};

/// wrk's connections: enough to keep nginx busy on a small machine.
const CONNECTIONS: u32 = 64;
/// How long after the storm the kept memory is read.
const SETTLE: Duration = Duration::from_secs(5);

/// One storm.
#[derive(Clone, Debug, Default)]
pub struct Burst {
    /// Connections made (one per request).
    pub connections: f64,
    /// VmHWM before the storm, MiB.
    pub hwm_before_mib: f64,
    /// VmHWM after it, MiB.
    pub hwm_after_mib: f64,
    /// VmRSS [`SETTLE`] after it, MiB.
    pub rss_settled_mib: f64,
}

/// Starts the all-sources agent, lets it warm up for `warmup` s, and
/// storms nginx for `seconds`.
pub fn measure(nginx: &Nginx, dir: &Path, warmup: u64, seconds: u32) -> Result<Burst> {
    let agent = Agent::start(Mode::All, dir)?;
    std::thread::sleep(Duration::from_secs(warmup));
    let (_, hwm_before) = agent.process.memory_kib();
    let load = Load {
        connections: CONNECTIONS,
        close: true,
        delay_ms: None,
    };
    let run = web::wrk(nginx, load, seconds)?;
    let (_, hwm_after) = agent.process.memory_kib();
    std::thread::sleep(SETTLE);
    let (rss_settled, _) = agent.process.memory_kib();
    agent.stop();
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(Burst {
        connections: run.requests,
        hwm_before_mib: mib(hwm_before),
        hwm_after_mib: mib(hwm_after),
        rss_settled_mib: mib(rss_settled),
    })
}
