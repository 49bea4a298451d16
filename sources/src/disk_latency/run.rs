//! The source's loop: one round per interval, and a last one at shutdown.

use std::time::Duration;

use sonde_core::event::EventBatch;
use sonde_core::{BoxError, SourceContext};
use tokio::time::MissedTickBehavior;

use super::collect::Collector;

/// How long the last round at shutdown may wait for the pipeline.
const FINAL_SEND_TIMEOUT: Duration = Duration::from_secs(5);

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
                let send = cx.out.send(EventBatch::new(events));
                if stopping {
                    // The last round waits for the pipeline, but not forever.
                    match tokio::time::timeout(FINAL_SEND_TIMEOUT, send).await {
                        Ok(result) => result?,
                        Err(_) => tracing::warn!(component = %cx.info, "last disk_latency round not accepted in time"),
                    }
                } else {
                    tokio::select! {
                        result = send => result?,
                        // Stuck behind a full pipeline at shutdown: the
                        // totals are cumulative, the last round has them.
                        _ = cx.shutdown.cancelled() => {}
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(component = %cx.info, %error, "disk_latency read failed"),
        }
        if stopping {
            break;
        }
    }
    tracing::debug!(component = %cx.info, "disk_latency source stopped");
    Ok(())
}
