//! `sink "prometheus"`: metrics for Prometheus, scraped or pushed.
//!
//! - `mode = "exporter"` (default) serves `/metrics` on `listen`, in the
//!   Prometheus text format 0.0.4, or OpenMetrics 1.0.0 when the scraper's
//!   `Accept` header asks for it (Prometheus does).
//! - `mode = "remote_write"` POSTs each batch to `endpoint` with the
//!   remote-write 1.0 protocol (protobuf, snappy), retried by the core.
//!
//! Both keep the cumulative value of every series in a [`SeriesStore`]
//! (deltas added up, idle series expired, new series beyond `max_series`
//! refused and counted), so Prometheus always sees what it expects:
//! monotonic counters, cumulative `_bucket{le}` series, `_sum` and `_count`.
//!
//! Files: `config.rs` (options, build), `naming.rs` (names and units),
//! `store.rs` (series), `labels.rs` (label sets), `encode.rs` (exposition formats), `server.rs`
//! (scrape endpoint), `proto.rs` and `remote_write.rs` (push).

mod config;
mod encode;
mod labels;
mod naming;
mod proto;
mod remote_write;
mod server;
mod store;

pub use config::{
    BasicAuth, ConfigError, Exporter, PrometheusMode, PrometheusSinkConfig, DEFAULT_EXPIRE_AFTER, DEFAULT_LISTEN,
    DEFAULT_MAX_SERIES,
};
pub use encode::{render, Format};
pub use naming::{family_name, label_name, metric_name};
pub use proto::{Label, MetricMetadata, MetricType, Sample, TimeSeries, WriteRequest};
pub use remote_write::{build_request, encode as encode_request, RemoteWriteError};
pub use server::{BindError, METRICS_PATH};
pub use store::{Kind, Refused, SeriesStore, StoreConfig, REFUSED_SAMPLES, SERIES};

#[cfg(test)]
mod tests;
