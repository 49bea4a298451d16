//! The source's loop: one round per interval, and a last one at shutdown.
//! A round blocks (it moves a thread across the CPUs and reads files), so
//! it runs on tokio's blocking pool.

use std::time::Duration;

use sonde_core::event::EventBatch;
use sonde_core::{BoxError, SourceContext};
use tokio::time::MissedTickBehavior;

use super::collect::Collector;

/// How long the last round at shutdown may wait for the pipeline.
const FINAL_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Emits the collector's metrics every `interval` until shutdown.
pub(super) async fn run(collector: Collector, interval: Duration, mut cx: SourceContext) -> Result<(), BoxError> {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut collector = Some(collector);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = cx.shutdown.cancelled() => true,
        };
        let mut owned = collector.take().expect("the collector is back after each round");
        let (owned, result) = tokio::task::spawn_blocking(move || {
            let result = owned.collect();
            (owned, result)
        })
        .await?;
        collector = Some(owned);
        match result {
            Ok(events) if !events.is_empty() => {
                let send = cx.out.send(EventBatch::new(events));
                if stopping {
                    match tokio::time::timeout(FINAL_SEND_TIMEOUT, send).await {
                        Ok(result) => result?,
                        Err(_) => tracing::warn!(component = %cx.info, "last energy round not accepted in time"),
                    }
                } else {
                    tokio::select! {
                        result = send => result?,
                        // Totals are cumulative: the last round carries them.
                        _ = cx.shutdown.cancelled() => {}
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(component = %cx.info, %error, "energy round failed"),
        }
        if stopping {
            break;
        }
    }
    tracing::debug!(component = %cx.info, "energy source stopped");
    Ok(())
}
