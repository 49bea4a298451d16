//! The source's loop: closed TCP flows within [`DRAIN_PERIOD`] while
//! flows close, within [`IDLE_DRAIN_PERIOD`] on a quiet node (at once when
//! many wait), open TCP flows and UDP flows each every poll period of
//! their own (the TCP one is the costlier read), the service map
//! every interval, and a last round at shutdown.

use std::time::Duration;

use super::bpf::ClosedFlows;
use sonde_core::event::Event;
use sonde_core::{BoxError, SourceContext};
use tokio::io::unix::AsyncFd;
use tokio::time::MissedTickBehavior;

use super::collect::Collector;
use super::config::NetFlowsSourceConfig;
use super::flows::Reason;

/// How often closed flows are picked up, while they come, when the kernel
/// does not wake us.
pub const DRAIN_PERIOD: Duration = Duration::from_millis(100);
/// The longest wait between pickups: each pickup that finds nothing doubles
/// the wait up to this, so a quiet node wakes the agent once a second, not
/// ten times, and the first records after a quiet spell are at most this
/// late.
pub const IDLE_DRAIN_PERIOD: Duration = Duration::from_secs(1);

/// The next tick of `timer`; never, without one.
async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The wait after a pickup that found `found` records, when the last wait was `last`.
fn next_drain_period(last: Duration, found: usize) -> Duration {
    if found > 0 {
        DRAIN_PERIOD
    } else {
        (last * 2).min(IDLE_DRAIN_PERIOD)
    }
}

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
    let every = |period: Duration| {
        let mut timer = tokio::time::interval_at(start + period, period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        timer
    };
    let mut poll_tcp = every(config.tcp_poll_period());
    let mut poll_udp = config.udp_poll_period().map(every);
    let mut emit_map = tokio::time::interval_at(start + config.interval, config.interval);
    emit_map.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The kernel wakes us only when a quarter of the ring is full: records
    // of a few closed flows are picked up by this timer instead.
    let mut drain_period = DRAIN_PERIOD;
    let drain = tokio::time::sleep_until(start + drain_period);
    tokio::pin!(drain);
    loop {
        let (events, stopping): (Vec<Event>, bool) = tokio::select! {
            guard = closed.readable_mut() => {
                let mut guard = guard?;
                let records = guard.get_inner_mut().drain();
                guard.clear_ready();
                drain_period = DRAIN_PERIOD;
                drain.as_mut().reset(tokio::time::Instant::now() + drain_period);
                (collector.closed(records), false)
            }
            _ = &mut drain => {
                let records = closed.get_mut().drain();
                drain_period = next_drain_period(drain_period, records.len());
                drain.as_mut().reset(tokio::time::Instant::now() + drain_period);
                (collector.closed(records), false)
            }
            _ = poll_tcp.tick() => (collector.poll_tcp(closed.get_mut(), Reason::ActiveTimeout), false),
            _ = tick(&mut poll_udp) => (collector.poll_udp(Reason::ActiveTimeout), false),
            _ = emit_map.tick() => (collector.service_map(), false),
            _ = cx.shutdown.cancelled() => {
                // Every open flow's counts so far, then the service map.
                let mut events = collector.poll(closed.get_mut(), Reason::Shutdown);
                events.extend(collector.service_map());
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
    tracing::debug!(component = %cx.info, "net_flows source stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pickups_slow_down_while_nothing_closes_and_speed_up_when_flows_do() {
        let mut period = DRAIN_PERIOD;
        let mut waits = Vec::new();
        for _ in 0..6 {
            period = next_drain_period(period, 0);
            waits.push(period.as_millis());
        }
        assert_eq!(waits, [200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(next_drain_period(period, 3), DRAIN_PERIOD);
    }
}
