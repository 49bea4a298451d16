//! Fixed request rates for the web workload (`web.rs`): wrk paced by its
//! Lua `delay()`, with the number of connections calibrated once, with no
//! agent, to reach the rate on this machine. Costs are then compared per
//! request at the same rate, never as throughput: a 2-vCPU VM cannot
//! resolve 1 % of requests/s, but it can count CPU time per request.

use anyhow::Result;

use super::web::{self, Load, Nginx};

/// wrk's pause after each response, per connection: a connection makes a
/// little under 1000 / `DELAY_MS` requests/s.
pub const DELAY_MS: u32 = 10;

/// A request rate and connection kind measured.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub label: &'static str,
    /// The rate aimed at, requests/s.
    pub target_rps: f64,
    /// A new connection per request.
    pub close: bool,
}

/// Every workload, in report order.
pub const WORKLOADS: [Workload; 3] = [
    Workload {
        label: "keep-alive, 1k/s",
        target_rps: 1_000.0,
        close: false,
    },
    Workload {
        label: "keep-alive, 10k/s",
        target_rps: 10_000.0,
        close: false,
    },
    Workload {
        label: "connection per request, 1k/s",
        target_rps: 1_000.0,
        close: true,
    },
];

impl Workload {
    /// The wrk load reaching about `target_rps` here: connections ×
    /// (1000 / `DELAY_MS`), then scaled by the rate a short run with the
    /// agent off achieved (a busy machine answers late, and a connection
    /// waits for its answer before its pause).
    pub fn calibrate(&self, nginx: &Nginx) -> Result<Load> {
        let mut load = Load {
            connections: (self.target_rps * f64::from(DELAY_MS) / 1000.0).round() as u32,
            close: self.close,
            delay_ms: Some(DELAY_MS),
        };
        let nominal = load.connections;
        let run = web::wrk(nginx, load, 2)?;
        let scaled = f64::from(load.connections) * self.target_rps / run.rps.max(1.0);
        load.connections = (scaled.round() as u32).clamp(nominal, 3 * nominal);
        Ok(load)
    }
}
