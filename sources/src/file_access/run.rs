//! The source's loop: records as the kernel wakes us (epoll on the ring
//! buffer), the dropped counters every interval, a last round at shutdown.

use std::time::Duration;

use sonde_core::event::Event;
use sonde_core::{BoxError, SourceContext};
use tokio::io::unix::AsyncFd;

use super::collect::{drain, drain_some, Collector, DRAIN_LIMIT};
use crate::clock::Clock;

/// Runs until shutdown.
pub(super) async fn run(mut collector: Collector, interval: Duration, mut cx: SourceContext) -> Result<(), BoxError> {
    let ring = collector
        .programs_mut()
        .take_events()
        .ok_or("file_access: the event ring buffer was taken")?;
    // SAFETY: the RingBuf owns its map's fd: it stays open, and is the same
    // fd, for as long as the AsyncFd owns the RingBuf.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?;
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    let clock = Clock::now();
    loop {
        let mut events: Vec<Event> = Vec::new();
        let stopping = tokio::select! {
            _ = cx.shutdown.cancelled() => true,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                // A bounded batch; the rest is read on the next turn.
                let (records, more) = drain_some(guard.get_inner_mut(), DRAIN_LIMIT);
                if !more {
                    guard.clear_ready();
                }
                events.extend(records.iter().map(|r| collector.record(r, &clock)));
                false
            }
            _ = ticker.tick() => {
                events.extend(collector.counters()?);
                false
            }
        };
        if stopping {
            let records = drain(ring.get_mut());
            events.extend(records.iter().map(|r| collector.record(r, &clock)));
            events.extend(collector.counters()?);
        }
        // Stuck behind a full pipeline at shutdown: this batch is given up,
        // the next round drains the ring buffer one last time.
        cx.send_events(events, stopping).await?;
        if stopping {
            break;
        }
    }
    tracing::debug!(component = %cx.info, "file_access source stopped");
    Ok(())
}
