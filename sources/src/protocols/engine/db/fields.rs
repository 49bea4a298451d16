//! The OpenTelemetry span fields of a database exchange, and its span name.

use sonde_core::event::{Attributes, SharedStr};

use super::super::strings::Strings;
use super::DbExchange;

/// The span name the conventions ask for: `db.query.summary` when known,
/// else `{db.operation.name} {db.namespace}`, else the system name.
pub fn span_name(db: &DbExchange, strings: &mut Strings) -> SharedStr {
    if let Some(summary) = &db.summary {
        return summary.clone().into();
    }
    match (&db.operation, &db.namespace) {
        (Some(operation), Some(namespace)) => strings.joined(operation, namespace),
        (Some(operation), None) => operation.clone(),
        (None, _) => SharedStr::from_static(db.system.name()),
    }
}

/// `db.operation.name` for metrics, `_OTHER` when unknown.
pub fn operation(db: &DbExchange) -> SharedStr {
    db.operation.clone().unwrap_or_else(|| SharedStr::from_static("_OTHER"))
}

/// Adds the exchange's fields.
pub fn fill(db: &DbExchange, fields: &mut Attributes) {
    fields.insert("db.system.name", db.system.name());
    if let Some(namespace) = &db.namespace {
        fields.insert("db.namespace", namespace.clone());
    }
    if let Some(operation) = &db.operation {
        fields.insert("db.operation.name", operation.clone());
    }
    if let Some(query) = &db.query {
        fields.insert("db.query.text", query.clone());
    }
    if let Some(summary) = &db.summary {
        fields.insert("db.query.summary", summary.clone());
    }
    if db.truncated {
        fields.insert("sonde.db.query.truncated", true);
    }
    if let Some(statement) = &db.statement {
        fields.insert("sonde.db.statement.name", statement.clone());
    }
    if let Some(code) = &db.status_code {
        fields.insert("db.response.status_code", code.clone());
    }
    if let Some(rows) = db.rows {
        fields.insert("db.response.returned_rows", rows);
    }
    if let Some(error) = &db.error {
        fields.insert("error.type", error.clone());
    }
}
