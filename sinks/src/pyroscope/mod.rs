//! `sink "pyroscope"`: profiles pushed to Grafana Pyroscope's HTTP ingest
//! API (`POST /ingest?name=…&from=…&until=…&format=pprof`), which
//! Pyroscope servers, Grafana Alloy's `pyroscope.receive_http` and
//! Grafana Cloud Profiles accept.
//!
//! Profiles whose application name and labels are equal are merged into
//! one pprof profile per request: the name is `service_name{label=value,…}`,
//! as Pyroscope expects, with the service name from the `service_name`
//! option or the first attribute of `service_name_attributes` present, and
//! every other attribute a label (dots become underscores). The pprof file
//! travels gzipped in a `multipart/form-data` part named `profile`, as
//! Pyroscope's own clients send it.
//!
//! Failures are classified for the core's retry layer: connection errors,
//! timeouts, 429 and 5xx are retriable (honouring `Retry-After`), other
//! 4xx permanent. A batch is retried whole, so the sink remembers which of
//! its requests were already accepted and does not send those again.

mod config;
mod service;
#[cfg(test)]
mod tests;

pub use config::{BasicAuth, PyroscopeSinkConfig, DEFAULT_EXCLUDE_LABELS, DEFAULT_SERVICE_NAME_ATTRIBUTES};
pub use service::{app_name, label_name};
