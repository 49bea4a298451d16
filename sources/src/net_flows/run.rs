//! The source's loop: closed TCP flows within [`DRAIN_PERIOD`] (at once
//! when many wait), open and idle flows every poll period, the service map
//! every interval, and a last round at shutdown.

use std::time::Duration;

use sonde_core::event::{Event, EventBatch};
use sonde_core::{BoxError, SourceContext};
use sonde_ebpf::net_flows::ClosedFlows;
use tokio::io::unix::AsyncFd;
use tokio::time::MissedTickBehavior;

use super::collect::Collector;
use super::config::NetFlowsSourceConfig;
use super::flows::Reason;

/// How often closed flows are picked up when the kernel does not wake us.
pub const DRAIN_PERIOD: Duration = Duration::from_millis(100);

/// Runs until shutdown.
pub(super) async fn run(
    mut collector: Collector,
    closed: ClosedFlows,
    config: NetFlowsSourceConfig,
    mut cx: SourceContext,
) -> Result<(), BoxError> {
    // The ring buffer's fd is readable when records wait (epoll).
    // SAFETY: `ClosedFlows` owns the ring buffer map's fd: it stays open and
    // is the same fd for as long as the AsyncFd owns it.
    let mut closed = unsafe { AsyncFd::register(closed) }.map_err(std::io::Error::from)?;
    let start = tokio::time::Instant::now();
    let mut poll = tokio::time::interval_at(start + config.poll_period(), config.poll_period());
    poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut emit_map = tokio::time::interval_at(start + config.interval, config.interval);
    emit_map.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The kernel wakes us only when a quarter of the ring is full: records
    // of a few closed flows are picked up by this timer instead.
    let mut drain = tokio::time::interval_at(start + DRAIN_PERIOD, DRAIN_PERIOD);
    drain.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let (events, stopping): (Vec<Event>, bool) = tokio::select! {
            guard = closed.readable_mut() => {
                let mut guard = guard?;
                let records = guard.get_inner_mut().drain();
                guard.clear_ready();
                (collector.closed(records), false)
            }
            _ = drain.tick() => {
                let records = closed.get_mut().drain();
                (collector.closed(records), false)
            }
            _ = poll.tick() => (collector.poll(closed.get_mut(), Reason::ActiveTimeout), false),
            _ = emit_map.tick() => (collector.service_map(), false),
            _ = cx.shutdown.cancelled() => {
                // Every open flow's counts so far, then the service map.
                let mut events = collector.poll(closed.get_mut(), Reason::Shutdown);
                events.extend(collector.service_map());
                (events, true)
            }
        };
        if !events.is_empty() {
            tokio::select! {
                result = cx.out.send(EventBatch::new(events)) => result?,
                // Stuck behind a full pipeline at shutdown: give up on this batch.
                _ = cx.shutdown.cancelled(), if !stopping => break,
            }
        }
        if stopping {
            break;
        }
    }
    tracing::debug!(component = %cx.info, "net_flows source stopped");
    Ok(())
}
