//! The loop of a source that reads its state every interval (the eBPF
//! sources whose kernel side keeps running totals: disk latency, TCP,
//! energy …): one round per interval, a last round at shutdown so short
//! runs report what they saw, and one rule for a pipeline that is full at
//! shutdown. Sources implement [`Collect`] and call [`run_every`]; the
//! loop is written once, so every source stops the same way.

use std::time::Duration;

use tokio::time::MissedTickBehavior;

use crate::component::{BoxError, SourceContext};
use crate::event::{Event, EventBatch};

/// How long the last round at shutdown may wait for the pipeline to take
/// its events. The same for every polling source: the agent's
/// `shutdown_grace` bounds the whole drain, this only keeps one source
/// from holding it alone.
pub const FINAL_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// What a polling source does each round.
pub trait Collect: Send + 'static {
    /// Why a round failed (logged; the next round tries again).
    type Error: std::fmt::Display + Send;

    /// Reads the source's state now and returns the events to emit.
    fn collect(&mut self) -> Result<Vec<Event>, Self::Error>;
}

/// Where a round runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rounds {
    /// On the runtime's worker: a round that only reads maps (microseconds).
    Inline,
    /// On tokio's blocking pool: a round that blocks (reads many files,
    /// moves a thread across CPUs).
    Blocking,
}

/// Runs `collector` every `interval` until `cx.shutdown`, then once more.
///
/// A round stuck behind a full pipeline when shutdown comes is abandoned:
/// the values are running totals, so the last round carries everything it
/// had. The last round waits at most [`FINAL_SEND_TIMEOUT`].
pub async fn run_every<C: Collect>(
    collector: C,
    interval: Duration,
    rounds: Rounds,
    mut cx: SourceContext,
) -> Result<(), BoxError> {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut collector = Some(collector);
    loop {
        let stopping = tokio::select! {
            _ = ticker.tick() => false,
            _ = cx.shutdown.cancelled() => true,
        };
        let mut owned = collector.take().ok_or("the collector is back after each round")?;
        let (owned, result) = match rounds {
            Rounds::Inline => {
                let result = owned.collect();
                (owned, result)
            }
            Rounds::Blocking => {
                tokio::task::spawn_blocking(move || {
                    let result = owned.collect();
                    (owned, result)
                })
                .await?
            }
        };
        collector = Some(owned);
        match result {
            Ok(events) if !events.is_empty() => {
                let send = cx.out.send(EventBatch::new(events));
                if stopping {
                    match tokio::time::timeout(FINAL_SEND_TIMEOUT, send).await {
                        Ok(result) => result?,
                        Err(_) => tracing::warn!(
                            component = %cx.info,
                            timeout = ?FINAL_SEND_TIMEOUT,
                            "the last round was not accepted in time; its totals are lost"
                        ),
                    }
                } else {
                    tokio::select! {
                        result = send => result?,
                        _ = cx.shutdown.cancelled() => {}
                    }
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(component = %cx.info, %error, "round failed; the next one tries again"),
        }
        if stopping {
            break;
        }
    }
    tracing::debug!(component = %cx.info, "source stopped");
    Ok(())
}
