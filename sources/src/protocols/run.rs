//! The source's loop: records every [`DRAIN_PERIOD`] (or at once when the
//! kernel wakes us, at a quarter of the ring), idle requests and
//! connections every [`EXPIRE_PERIOD`], the metrics every interval, and a
//! last round at shutdown.

use std::time::Duration;

use sonde_core::event::{Event, Timestamp};
use sonde_core::{BoxError, SourceContext};
use tokio::io::unix::AsyncFd;
use tokio::time::MissedTickBehavior;

use super::bpf::Records;
use super::collect::Collector;
use super::config::ProtocolsSourceConfig;

/// How often records are picked up when the kernel does not wake us: a
/// span is at most this late (plus its request's own time).
pub const DRAIN_PERIOD: Duration = Duration::from_millis(100);
/// How often idle requests and connections are expired.
pub const EXPIRE_PERIOD: Duration = Duration::from_secs(1);

/// Runs until shutdown.
pub(super) async fn run(
    mut collector: Collector,
    records: Records,
    config: ProtocolsSourceConfig,
    mut cx: SourceContext,
) -> Result<(), BoxError> {
    // SAFETY: `Records` owns the ring buffer map's fd: it stays open and is
    // the same fd for as long as the AsyncFd owns it.
    let mut records = unsafe { AsyncFd::register(records) }.map_err(std::io::Error::from)?;
    let start = tokio::time::Instant::now();
    let every = |period: Duration| {
        let mut timer = tokio::time::interval_at(start + period, period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer
    };
    let mut drain = every(DRAIN_PERIOD);
    let mut expire = every(EXPIRE_PERIOD);
    let mut emit = every(config.interval);
    // A drain that stopped at DRAIN_LIMIT with records left: the next one
    // follows at once, whichever way the first was started.
    let mut backlog = false;
    loop {
        let (events, stopping): (Vec<Event>, bool) = tokio::select! {
            _ = std::future::ready(()), if backlog => {
                let (events, more) = collector.drain(records.get_mut());
                backlog = more;
                (events, false)
            }
            guard = records.readable_mut() => {
                let mut guard = guard?;
                let (events, more) = collector.drain(guard.get_inner_mut());
                if !more {
                    guard.clear_ready();
                }
                (events, false)
            }
            _ = drain.tick() => {
                let (events, more) = collector.drain(records.get_mut());
                backlog = more;
                (events, false)
            }
            _ = expire.tick() => (collector.expire(Timestamp::now()), false),
            _ = emit.tick() => (metrics(&mut collector, &config), false),
            _ = cx.shutdown.cancelled() => {
                // What the kernel has sent so far, then the metrics.
                let mut events = collector.drain(records.get_mut()).0;
                events.extend(metrics(&mut collector, &config));
                (events, true)
            }
        };
        // Stuck behind a full pipeline at shutdown: give up on this batch.
        if !cx.send_events(events, stopping).await? {
            break;
        }
        if stopping {
            break;
        }
    }
    tracing::debug!(component = %cx.info, "protocols source stopped");
    Ok(())
}

fn metrics(collector: &mut Collector, config: &ProtocolsSourceConfig) -> Vec<Event> {
    let events = collector.metrics(Timestamp::now());
    if config.metrics {
        events
    } else {
        Vec::new()
    }
}
