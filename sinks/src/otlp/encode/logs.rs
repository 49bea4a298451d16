//! Log events → `ExportLogsServiceRequest`.
//!
//! A log's `name` (`net.flow`) is the record's `event_name`; its structured
//! `fields` are the body, as a key/value list, so a flow record arrives as
//! one structured value; a `message` alone is a string body, and a message
//! beside fields is the body's `message` entry. Origin attributes that are
//! not resource attributes are the record's attributes.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use sonde_core::event::{Log, Severity, Value};

use super::common::{key_value, point_attributes, scope, string_value, Grouper, ResourceDefaults};

/// Body key of a message that comes with fields.
pub const MESSAGE_KEY: &str = "message";

/// OTLP severity number and text of `severity`.
pub fn severity(severity: Severity) -> (SeverityNumber, &'static str) {
    match severity {
        Severity::Debug => (SeverityNumber::Debug, "DEBUG"),
        Severity::Info => (SeverityNumber::Info, "INFO"),
        Severity::Warn => (SeverityNumber::Warn, "WARN"),
        Severity::Error => (SeverityNumber::Error, "ERROR"),
    }
}

fn body(log: &Log) -> Option<AnyValue> {
    if log.fields.is_empty() {
        return log.message.as_deref().map(string_value);
    }
    let mut values: Vec<_> = log.fields.iter().map(|(k, v)| key_value(k, v)).collect();
    if let Some(message) = &log.message {
        if !log.fields.contains(MESSAGE_KEY) {
            values.push(key_value(MESSAGE_KEY, &Value::Str(message.clone())));
        }
    }
    Some(AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values })),
    })
}

fn record(log: &Log) -> LogRecord {
    let (number, text) = severity(log.severity);
    LogRecord {
        time_unix_nano: log.timestamp.as_nanos(),
        // sonde observes what it reports as it happens: the kernel hands
        // the event over at (about) the time it stamps.
        observed_time_unix_nano: log.timestamp.as_nanos(),
        severity_number: number as i32,
        severity_text: text.to_string(),
        body: body(log),
        attributes: point_attributes(&log.attributes),
        event_name: log.name.to_string(),
        ..LogRecord::default()
    }
}

/// One request carrying `logs`.
pub fn encode(logs: &[&Log], defaults: &ResourceDefaults) -> ExportLogsServiceRequest {
    let mut grouper = Grouper::<Vec<LogRecord>>::new(defaults);
    for log in logs {
        grouper.scope_for(&log.attributes).push(record(log));
    }
    ExportLogsServiceRequest {
        resource_logs: grouper
            .groups
            .into_iter()
            .map(|group| ResourceLogs {
                resource: Some(group.resource),
                scope_logs: group
                    .scopes
                    .into_iter()
                    .map(|(component, log_records)| ScopeLogs {
                        scope: Some(scope(component.as_ref())),
                        log_records,
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Log records in a request.
pub fn records(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum()
}
