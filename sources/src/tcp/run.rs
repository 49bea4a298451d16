//! The source's loop: one round per interval, and a last one at shutdown.

use std::time::Duration;

use sonde_core::event::EventBatch;
use sonde_core::{BoxError, SourceContext};
use tokio::time::MissedTickBehavior;

use super::collect::Collector;

/// Emits the collector's metrics every `interval` until shutdown.
pub(super) async fn run(mut collector: Collector, interval: Duration, mut cx: SourceContext) -> Result<(), BoxError> {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = cx.shutdown.cancelled() => true,
        };
        // A last round at shutdown, so short runs report what they saw.
        match collector.collect() {
            Ok(events) if !events.is_empty() => {
                tokio::select! {
                    result = cx.out.send(EventBatch::new(events)) => result?,
                    // Stuck behind a full pipeline at shutdown: nothing
                    // accepted is lost, and the totals are cumulative.
                    _ = cx.shutdown.cancelled(), if !stopping => break,
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(component = %cx.info, %error, "tcp read failed"),
        }
        if stopping {
            break;
        }
    }
    tracing::debug!(component = %cx.info, "tcp source stopped");
    Ok(())
}
