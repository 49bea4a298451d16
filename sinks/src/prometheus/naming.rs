//! Prometheus names: metric and label names sanitised to Prometheus' rules,
//! and OTLP's UCUM units turned into the name suffixes Prometheus' naming
//! conventions ask for (`_seconds`, `_bytes`, `_total`).
//!
//! The rules follow OpenTelemetry's "Prometheus and OpenMetrics
//! compatibility" specification, so a metric reads the same whether it
//! reaches Prometheus through this sink or through an OTLP collector.

use std::borrow::Cow;

use super::store::Kind;

fn is_name_char(c: char, colon: bool) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':')
}

/// Replaces every character outside `[a-zA-Z0-9_]` (plus `:` in metric
/// names) by `_`, and prefixes `_` when the name starts with a digit.
/// Borrows when nothing changes, which is the common case on the hot path.
fn sanitize(name: &str, colon: bool) -> Cow<'_, str> {
    let valid = name.chars().all(|c| is_name_char(c, colon)) && !name.starts_with(|c: char| c.is_ascii_digit());
    if valid {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| if is_name_char(c, colon) { c } else { '_' }));
    Cow::Owned(out)
}

/// A metric name made valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn metric_name(name: &str) -> Cow<'_, str> {
    if name.is_empty() {
        return Cow::Borrowed("_");
    }
    sanitize(name, true)
}

/// A label name made valid (`[a-zA-Z_][a-zA-Z0-9_]*`): `k8s.pod.name`
/// becomes `k8s_pod_name`. Names starting with `__` are reserved for
/// Prometheus' own use, so those get a `key` prefix. `None` for an empty key.
pub fn label_name(name: &str) -> Option<Cow<'_, str>> {
    if name.is_empty() {
        return None;
    }
    let sanitized = sanitize(name, false);
    if sanitized.starts_with("__") {
        return Some(Cow::Owned(format!("key{sanitized}")));
    }
    Some(sanitized)
}

/// The Prometheus word for a UCUM unit (`s` → `seconds`).
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "bit" => "bits",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

/// The singular word for the denominator of a rate unit (`By/s` → `second`).
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// Removes UCUM annotations (`{packets}`), which carry no unit.
fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The suffix a UCUM unit adds to a metric name: `s` → `seconds`,
/// `By/s` → `bytes_per_second`, `1` → `ratio` for gauges (nothing for
/// counters, whose `_total` says it), `{packets}` → nothing.
pub fn unit_suffix(unit: &str, kind: Kind) -> Option<String> {
    let unit = strip_annotations(unit);
    let unit = unit.trim();
    if unit.is_empty() {
        return None;
    }
    if unit == "1" {
        return (kind == Kind::Gauge).then(|| "ratio".to_string());
    }
    let word = |u: &str, per: bool| {
        let known = if per { per_unit_word(u) } else { unit_word(u) };
        known
            .map(str::to_string)
            .unwrap_or_else(|| sanitize(u, false).into_owned())
    };
    let suffix = match unit.split_once('/') {
        Some((top, bottom)) if !top.is_empty() && !bottom.is_empty() => {
            format!("{}_per_{}", word(top, false), word(bottom, true))
        }
        Some((_, bottom)) if !bottom.is_empty() => format!("per_{}", word(bottom, true)),
        _ => word(unit, false),
    };
    Some(suffix.trim_matches('_').to_string()).filter(|s| !s.is_empty())
}

/// The exposed name of a metric family and the unit word it ends with.
///
/// A counter's family name is its name without `_total`, which the encoder
/// adds to each sample as both formats require; the unit suffix goes before
/// it (`x_seconds_total`), and is added only when the name lacks it.
pub fn family_name(name: &str, unit: Option<&str>, kind: Kind) -> (String, Option<String>) {
    let mut base = metric_name(name).into_owned();
    if kind == Kind::Counter {
        if let Some(stripped) = base.strip_suffix("_total") {
            base.truncate(stripped.len());
        }
    }
    let suffix = unit.and_then(|u| unit_suffix(u, kind));
    if let Some(suffix) = &suffix {
        if !base.ends_with(&format!("_{suffix}")) && base != *suffix {
            base.push('_');
            base.push_str(suffix);
        }
    }
    (base, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitised() {
        assert_eq!(label_name("k8s.pod.name").unwrap(), "k8s_pod_name");
        assert_eq!(label_name("process.pid").unwrap(), "process_pid");
        assert!(matches!(label_name("device").unwrap(), Cow::Borrowed(_)));
        assert_eq!(label_name("9lives").unwrap(), "_9lives");
        assert_eq!(label_name("__name__").unwrap(), "key__name__");
        assert_eq!(label_name("héllo wörld").unwrap(), "h_llo_w_rld");
        assert!(label_name("").is_none());
        assert_eq!(metric_name("http.server:duration"), "http_server:duration");
        assert_eq!(metric_name("2xx"), "_2xx");
    }

    #[test]
    fn units_become_suffixes_once() {
        let f = |name, unit, kind| family_name(name, unit, kind).0;
        assert_eq!(f("disk.latency", Some("s"), Kind::Histogram), "disk_latency_seconds");
        assert_eq!(
            f("disk_latency_seconds", Some("s"), Kind::Histogram),
            "disk_latency_seconds"
        );
        assert_eq!(f("tx_bytes_total", Some("By"), Kind::Counter), "tx_bytes");
        assert_eq!(f("tx", Some("By"), Kind::Counter), "tx_bytes");
        assert_eq!(
            f("throughput", Some("By/s"), Kind::Gauge),
            "throughput_bytes_per_second"
        );
        assert_eq!(f("cpu.utilization", Some("1"), Kind::Gauge), "cpu_utilization_ratio");
        assert_eq!(f("packets_total", Some("1"), Kind::Counter), "packets");
        assert_eq!(f("packets", Some("{packets}"), Kind::Counter), "packets");
        assert_eq!(f("up", None, Kind::Gauge), "up");
        assert_eq!(f("requests", Some("{request}/s"), Kind::Gauge), "requests_per_second");
    }

    #[test]
    fn convention_names_read_as_prometheus_ones() {
        // (OpenTelemetry name, unit, kind) → the family name; counters get
        // `_total` from the encoder.
        let f = |name, unit, kind| family_name(name, Some(unit), kind).0;
        assert_eq!(f("system.disk.io", "By", Kind::Counter), "system_disk_io_bytes");
        assert_eq!(
            f("system.disk.operations", "{operation}", Kind::Counter),
            "system_disk_operations"
        );
        assert_eq!(
            f("sonde.disk.request.duration", "s", Kind::Histogram),
            "sonde_disk_request_duration_seconds"
        );
        assert_eq!(
            f("sonde.tcp.connections.opened", "{connection}", Kind::Counter),
            "sonde_tcp_connections_opened"
        );
        assert_eq!(f("sonde.node.power", "W", Kind::Gauge), "sonde_node_power_watts");
        assert_eq!(f("sonde.node.energy", "J", Kind::Counter), "sonde_node_energy_joules");
        assert_eq!(
            f("http.server.request.duration", "s", Kind::Histogram),
            "http_server_request_duration_seconds"
        );
        assert_eq!(f("sonde.buffer", "By", Kind::Gauge), "sonde_buffer_bytes");
    }
}
