//! `sink "console"`: events to standard output, as JSON lines or text.

use std::io::Write;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::event::{Event, EventBatch, EventKinds};
use sonde_core::{
    batch_sink, BatchSink, BoxError, CancellationToken, ComponentInfo, Sink, SinkConfig, SinkContext, SinkError,
};

/// How events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleEncoding {
    /// One JSON object per line (default), as the file sink writes.
    #[default]
    Json,
    /// One readable line per event: time, kind, name, value, attributes.
    Text,
}

/// Where to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleTarget {
    /// Standard output (default).
    #[default]
    Stdout,
    /// Standard error, where sonde's own logs go.
    Stderr,
}

/// Writes events to standard output (or error), for a first look at what a
/// source produces.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSinkConfig {
    /// `json` (default) or `text`.
    #[serde(default)]
    pub encoding: ConsoleEncoding,
    /// `stdout` (default) or `stderr`.
    #[serde(default)]
    pub target: ConsoleTarget,
}

impl sonde_core::registry::SinkType for ConsoleSinkConfig {
    const NAME: &'static str = "console";
}

impl SinkConfig for ConsoleSinkConfig {
    fn accepts(&self) -> EventKinds {
        EventKinds::ALL
    }

    fn build(&self, cx: &SinkContext) -> Result<Sink, BoxError> {
        Ok(batch_sink(Console {
            encoding: self.encoding,
            target: self.target,
            info: cx.info.clone(),
            stop: cx.shutdown.clone(),
        }))
    }
}

#[derive(Debug)]
struct Console {
    encoding: ConsoleEncoding,
    target: ConsoleTarget,
    info: ComponentInfo,
    /// Cancelled to end this sink when its stream is closed for good.
    stop: CancellationToken,
}

/// One readable line for `event`.
pub fn text_line(event: &Event) -> String {
    let attributes: Vec<String> = event.attributes().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let detail = match event {
        Event::Metric(m) => match &m.value {
            sonde_core::event::MetricValue::Counter { value } => format!("counter {value}"),
            sonde_core::event::MetricValue::Gauge { value } => format!("gauge {value}"),
            sonde_core::event::MetricValue::Histogram(h) => format!("histogram count={} sum={}", h.count, h.sum),
        },
        Event::Log(l) => {
            let fields: Vec<String> = l.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}", l.message.as_deref().unwrap_or(""), fields.join(" "))
        }
        Event::Profile(p) => format!("{} samples, {} stacks", p.total_samples(), p.samples.len()),
        Event::Span(s) => format!(
            "{:?} {} ms",
            s.kind,
            (s.end.as_nanos().saturating_sub(s.start.as_nanos())) / 1_000_000
        ),
    };
    format!(
        "{} {} {} {} {{{}}}",
        event.timestamp(),
        event.kind(),
        event.name(),
        detail.trim(),
        attributes.join(", ")
    )
}

impl BatchSink for Console {
    async fn send(&self, batch: EventBatch) -> Result<(), SinkError> {
        let mut buffer = Vec::with_capacity(batch.len() * 200);
        for event in &batch {
            match self.encoding {
                ConsoleEncoding::Json => serde_json::to_writer(&mut buffer, event).map_err(SinkError::permanent)?,
                ConsoleEncoding::Text => buffer.extend_from_slice(text_line(event).as_bytes()),
            }
            buffer.push(b'\n');
        }
        let (name, result) = match self.target {
            ConsoleTarget::Stdout => ("stdout", std::io::stdout().lock().write_all(&buffer)),
            ConsoleTarget::Stderr => ("stderr", std::io::stderr().lock().write_all(&buffer)),
        };
        match result {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                // The reader is gone (`sonde run … | head`) and will not come
                // back: this sink ends. Its task sees the stop, counts this
                // batch and what is queued as `output_closed`, and the agent
                // stops once no sink is left.
                if !self.stop.is_cancelled() {
                    tracing::info!(component = %self.info, "{name} was closed by its reader; this sink stops");
                    self.stop.cancel();
                }
                std::future::pending().await
            }
            Err(error) => Err(SinkError::permanent(std::io::Error::new(
                error.kind(),
                format!("cannot write to {name}: {error}"),
            ))),
        }
    }
}
