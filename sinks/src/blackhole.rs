//! `sink "blackhole"`: counts and discards. For benchmarks, and for trying
//! sources without storing what they make.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::config::{Checks, Invalid, MIN_INTERVAL};
use sonde_core::event::{EventBatch, EventKinds};
use sonde_core::{batch_sink, BatchSink, BoxError, Sink, SinkConfig, SinkContext, SinkError};

/// Counts and discards every event. Its count is the agent metric
/// `sonde_component_sent_events_total` of this sink.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {
    /// Log the running count this often (`"10s"`), at least `100ms`.
    /// Default: never.
    #[serde(default, with = "humantime_serde")]
    #[schemars(with = "Option<String>")]
    pub print_interval: Option<Duration>,
}

impl sonde_core::registry::SinkType for BlackholeSinkConfig {
    const NAME: &'static str = "blackhole";
}

impl SinkConfig for BlackholeSinkConfig {
    fn accepts(&self) -> EventKinds {
        EventKinds::ALL
    }

    fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut check = Checks::new();
        check.that(
            self.print_interval.is_none_or(|every| every >= MIN_INTERVAL),
            "print_interval",
            "must be at least 100ms",
        );
        check.finish()
    }

    fn build(&self, cx: &SinkContext) -> Result<Sink, BoxError> {
        let sink = Blackhole::default();
        if let Some(every) = self.print_interval {
            let count = sink.events.clone();
            let stop = cx.shutdown.clone();
            let info = cx.info.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = tick.tick() => tracing::info!(component = %info, events = count.load(Ordering::Relaxed), "blackhole"),
                        _ = stop.cancelled() => break,
                    }
                }
            });
        }
        Ok(batch_sink(sink))
    }
}

/// The blackhole sink: counts events.
#[derive(Clone, Debug, Default)]
pub struct Blackhole {
    /// Events received so far; shared with the task that logs it.
    pub events: Arc<AtomicU64>,
}

impl BatchSink for Blackhole {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        self.events.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}
