//! Span events → `ExportTraceServiceRequest`.
//!
//! A span's protocol `fields` (`http.request.method` …) and its non-resource
//! origin attributes are the OTLP span's attributes, fields first.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind as OtlpKind, status::StatusCode, ResourceSpans, ScopeSpans, Span as OtlpSpan, Status,
};
use sonde_core::event::{Span, SpanKind, SpanStatus};

use super::common::{key_value, point_attributes, scope, Grouper, ResourceDefaults};

fn kind(kind: SpanKind) -> OtlpKind {
    match kind {
        SpanKind::Client => OtlpKind::Client,
        SpanKind::Server => OtlpKind::Server,
        SpanKind::Internal => OtlpKind::Internal,
    }
}

fn status(status: &SpanStatus) -> Status {
    match status {
        SpanStatus::Unset => Status::default(),
        SpanStatus::Ok => Status {
            code: StatusCode::Ok as i32,
            message: String::new(),
        },
        SpanStatus::Error { message } => Status {
            code: StatusCode::Error as i32,
            message: message.to_string(),
        },
    }
}

fn span(span: &Span) -> OtlpSpan {
    let mut attributes: Vec<_> = span.fields.iter().map(|(k, v)| key_value(k, v)).collect();
    attributes.extend(point_attributes(&span.attributes));
    OtlpSpan {
        trace_id: span.trace_id.to_vec(),
        span_id: span.span_id.to_vec(),
        parent_span_id: span.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
        name: span.name.to_string(),
        kind: kind(span.kind) as i32,
        start_time_unix_nano: span.start.as_nanos(),
        end_time_unix_nano: span.end.as_nanos(),
        attributes,
        status: Some(status(&span.status)),
        ..OtlpSpan::default()
    }
}

/// One request carrying `spans`.
pub fn encode(spans: &[&Span], defaults: &ResourceDefaults) -> ExportTraceServiceRequest {
    let mut grouper = Grouper::<Vec<OtlpSpan>>::new(defaults);
    for s in spans {
        grouper.scope_for(&s.attributes).push(span(s));
    }
    ExportTraceServiceRequest {
        resource_spans: grouper
            .groups
            .into_iter()
            .map(|group| ResourceSpans {
                resource: Some(group.resource),
                scope_spans: group
                    .scopes
                    .into_iter()
                    .map(|(component, spans)| ScopeSpans {
                        scope: Some(scope(component.as_ref())),
                        spans,
                        schema_url: String::new(),
                    })
                    .collect(),
                schema_url: String::new(),
            })
            .collect(),
    }
}

/// Spans in a request.
pub fn spans(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}
