//! The exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0.0,
//! chosen by the scraper's `Accept` header.
//!
//! The two differ in a few places only, all handled here: a counter's TYPE
//! line names `x_total` in the text format and `x` in OpenMetrics;
//! OpenMetrics escapes `"` in HELP, may carry a UNIT line, and ends with
//! `# EOF`. Label values are escaped alike (`\\`, `\"`, `\n`), which is why
//! the store can keep each series' label set already rendered.

use std::sync::Arc;

use super::store::{Family, Kind, SeriesStore, SeriesValue};

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`, the classic format (and the default).
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers. OpenMetrics only when asked
    /// for by name with at least the preference of the text format (a bare
    /// `*/*` gets text, which every scraper reads).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// Appends `value` escaped for a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(out: &mut String, value: &str) {
    escape(out, value, true);
}

fn escape(out: &mut String, value: &str, quotes: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quotes && b == b'"');
    if !value.bytes().any(special) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends a sample value: shortest round-trip decimal, `+Inf`, `-Inf`, `NaN`.
pub fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        out.push_str(ryu::Buffer::new().format_finite(value));
    }
}

fn write_count(out: &mut String, value: u64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Renders every series of `store` in `format` into `out`, families
/// sorted by name so that scrapes are stable and diffable.
pub fn render(store: &SeriesStore, format: Format, out: &mut String) {
    // A family whose every series was refused or expired has nothing to say.
    let mut families: Vec<&Family> = store.families().filter(|f| !f.series.is_empty()).collect();
    families.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    for family in families {
        write_family(out, family, format);
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

fn write_family(out: &mut String, family: &Family, format: Format) {
    let name = &*family.name;
    let (kind, typed_name) = match (family.kind, format) {
        (Kind::Counter, Format::Text) => ("counter", format!("{name}_total")),
        (Kind::Counter, Format::OpenMetrics) => ("counter", name.to_string()),
        (Kind::Gauge, _) => ("gauge", name.to_string()),
        (Kind::Histogram, _) => ("histogram", name.to_string()),
    };
    // Every family gets a HELP line (`promtool check metrics` asks for
    // one): the metric's description, else one made from its name.
    out.push_str("# HELP ");
    out.push_str(&typed_name);
    out.push(' ');
    match &family.help {
        Some(help) if !help.trim().is_empty() => escape(out, help, format == Format::OpenMetrics),
        _ => {
            out.push_str("Metric ");
            out.push_str(name);
            out.push_str(" (its source gave no description).");
        }
    }
    out.push('\n');
    out.push_str("# TYPE ");
    out.push_str(&typed_name);
    out.push(' ');
    out.push_str(kind);
    out.push('\n');
    if let (Some(unit), Format::OpenMetrics) = (&family.unit, format) {
        out.push_str("# UNIT ");
        out.push_str(name);
        out.push(' ');
        out.push_str(unit);
        out.push('\n');
    }
    // Most series of a family share one bounds list: format its `le`
    // values once, not once per series.
    let mut le_cache: Option<(Arc<[f64]>, Vec<String>)> = None;
    for (labels, series) in &family.series {
        match &series.value {
            SeriesValue::Scalar(value) => {
                let suffix = if family.kind == Kind::Counter { "_total" } else { "" };
                write_sample(out, name, suffix, labels, None);
                write_float(out, *value);
                out.push('\n');
            }
            SeriesValue::Histogram(h) => {
                let fresh = match &le_cache {
                    Some((bounds, _)) => !Arc::ptr_eq(bounds, &h.bounds) && **bounds != *h.bounds,
                    None => true,
                };
                if fresh {
                    let mut les: Vec<String> = h
                        .bounds
                        .iter()
                        .map(|b| {
                            let mut s = String::new();
                            write_float(&mut s, *b);
                            s
                        })
                        .collect();
                    les.push("+Inf".to_string());
                    le_cache = Some((h.bounds.clone(), les));
                }
                let les = &le_cache.as_ref().expect("filled above").1;
                let mut cumulative = 0u64;
                for (count, le) in h.counts.iter().zip(les) {
                    cumulative += count;
                    write_sample(out, name, "_bucket", labels, Some(le));
                    write_count(out, cumulative);
                    out.push('\n');
                }
                write_sample(out, name, "_sum", labels, None);
                write_float(out, h.sum);
                out.push('\n');
                // `_count` is the +Inf bucket by definition; taking it from
                // the buckets keeps the two equal even if a source's count is off.
                write_sample(out, name, "_count", labels, None);
                write_count(out, cumulative);
                out.push('\n');
            }
        }
    }
}

/// Writes `name{labels,le="…"} ` (without braces when there is no label).
fn write_sample(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<&str>) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str("le=\"");
            out.push_str(le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}
