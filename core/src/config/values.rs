//! Option values that are checked as they are parsed, so that a bad one is
//! reported like every other config error (`file:line:col`, the option
//! named) by `sonde validate` and by `sonde run` before anything loads.
//!
//! Each is a newtype for fields that can take it, plus a serde module for
//! fields that keep their plain type (`#[serde(with = "…")]`), so that code
//! using the field need not change:
//!
//! ```ignore
//! /// Time between reports. Default `10s`.
//! #[serde(default = "default_interval", with = "sonde_core::config::positive_duration")]
//! #[schemars(with = "sonde_core::config::PositiveDuration")]
//! pub interval: Duration,
//! ```

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A duration longer than zero, written as humantime text (`10s`, `500ms`,
/// `1m 30s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositiveDuration(Duration);

impl PositiveDuration {
    /// `duration`, when it is longer than zero.
    pub const fn new(duration: Duration) -> Option<Self> {
        if duration.is_zero() {
            None
        } else {
            Some(PositiveDuration(duration))
        }
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// Parses humantime text, refusing zero.
    pub fn parse(text: &str) -> Result<Self, String> {
        let duration = humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration ({e}); write it like `10s`, `500ms` or `1m`"))?;
        Self::new(duration).ok_or_else(|| "must be longer than 0s".to_string())
    }
}

impl Deref for PositiveDuration {
    type Target = Duration;
    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl From<PositiveDuration> for Duration {
    fn from(value: PositiveDuration) -> Duration {
        value.0
    }
}

impl fmt::Display for PositiveDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        PositiveDuration::parse(&text).map_err(D::Error::custom)
    }
}

impl JsonSchema for PositiveDuration {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "PositiveDuration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "duration" })
    }
}

/// `#[serde(with = "positive_duration")]` for a `Duration` field that must be
/// longer than zero.
pub mod positive_duration {
    use super::*;

    /// Reads humantime text, refusing zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        PositiveDuration::deserialize(deserializer).map(PositiveDuration::get)
    }

    /// Writes humantime text.
    pub fn serialize<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(duration, serializer)
    }
}

/// The shortest period a source may be asked to work at: below it a source
/// spends its time waking up (at `1ns` one busy-loops a core) and floods
/// the pipeline, for no finer data than its kernel-side totals give.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `#[serde(with = "interval")]` for a source's period (`interval`, and
/// timeouts that work as one): humantime text of at least [`MIN_INTERVAL`].
pub mod interval {
    use super::*;

    /// Parses humantime text of at least [`MIN_INTERVAL`].
    pub fn parse(text: &str) -> Result<Duration, String> {
        let duration = PositiveDuration::parse(text)?.get();
        if duration < MIN_INTERVAL {
            return Err(format!(
                "must be at least {} (a shorter period only burns CPU), not {text}",
                humantime::format_duration(MIN_INTERVAL)
            ));
        }
        Ok(duration)
    }

    /// Reads humantime text of at least [`MIN_INTERVAL`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse(&text).map_err(D::Error::custom)
    }

    /// Writes humantime text.
    pub fn serialize<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(duration, serializer)
    }
}

/// An `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpUrl(String);

impl HttpUrl {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<Self, String> {
        // `host:port` parses as a URL whose scheme is the host: say what is
        // missing instead of naming a scheme nobody wrote.
        if !text.contains("://") && url::Url::parse(&format!("http://{text}")).is_ok() {
            return Err(format!(
                "`{text}` has no scheme; write `http://{text}` (or `https://` for TLS)"
            ));
        }
        let url = url::Url::parse(text)
            .map_err(|e| format!("`{text}` is not a URL ({e}); write it like `http://host:port`"))?;
        match url.scheme() {
            "http" | "https" => Ok(HttpUrl(text.to_string())),
            scheme => Err(format!("the scheme is `{scheme}`; it must be `http` or `https`")),
        }
    }

    /// The URL as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL as written.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl Deref for HttpUrl {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HttpUrl::parse(&text).map_err(D::Error::custom)
    }
}

impl JsonSchema for HttpUrl {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "HttpUrl".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "uri", "pattern": "^[hH][tT][tT][pP][sS]?://" })
    }
}

/// `#[serde(with = "http_url")]` for a `String` field that must be an
/// http(s) URL.
pub mod http_url {
    use super::*;

    /// Reads an http(s) URL.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        HttpUrl::deserialize(deserializer).map(HttpUrl::into_string)
    }

    /// Writes the URL.
    pub fn serialize<S: serde::Serializer>(url: &str, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(url)
    }

    /// The same for an `Option<String>` field.
    pub mod option {
        use super::*;

        /// Reads an optional http(s) URL.
        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
            Option::<HttpUrl>::deserialize(deserializer).map(|u| u.map(HttpUrl::into_string))
        }

        /// Writes the URL, or null.
        pub fn serialize<S: serde::Serializer>(url: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
            serde::Serialize::serialize(url, serializer)
        }
    }
}

/// A fraction from 0 to 1, both included: a sampling rate.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Fraction(f64);

impl Fraction {
    /// `value`, when it is in [0, 1].
    pub fn new(value: f64) -> Option<Self> {
        (0.0..=1.0).contains(&value).then_some(Fraction(value))
    }

    /// The value.
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl Deref for Fraction {
    type Target = f64;
    fn deref(&self) -> &f64 {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        Fraction::new(value).ok_or_else(|| D::Error::custom(format!("must be between 0 and 1, not {value}")))
    }
}

impl JsonSchema for Fraction {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "Fraction".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "number", "minimum": 0.0, "maximum": 1.0 })
    }
}

/// `#[serde(with = "fraction")]` for an `f64` field in [0, 1].
pub mod fraction {
    use super::*;

    /// Reads a number in [0, 1].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Fraction::deserialize(deserializer).map(Fraction::get)
    }

    /// Writes the number.
    pub fn serialize<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn a_url_without_scheme_says_so() {
        let error = HttpUrl::parse("localhost:4317").unwrap_err();
        assert_eq!(
            error,
            "`localhost:4317` has no scheme; write `http://localhost:4317` (or `https://` for TLS)"
        );
        assert!(HttpUrl::parse("ftp://h/").unwrap_err().contains("the scheme is `ftp`"));
    }

    #[test]
    fn interval_has_a_floor() {
        assert_eq!(interval::parse("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(interval::parse("10s"), Ok(Duration::from_secs(10)));
        let error = interval::parse("1ns").unwrap_err();
        assert!(error.contains("at least 100ms"), "{error}");
        assert_eq!(interval::parse("0s").unwrap_err(), "must be longer than 0s");
    }

    #[test]
    fn positive_duration() {
        let d: PositiveDuration = parse(serde_json::json!("1m 30s")).unwrap();
        assert_eq!(d.get(), Duration::from_secs(90));
        assert_eq!(*d, Duration::from_secs(90));
        assert_eq!(
            parse::<PositiveDuration>(serde_json::json!("0s")).unwrap_err(),
            "must be longer than 0s"
        );
        assert!(parse::<PositiveDuration>(serde_json::json!("ten"))
            .unwrap_err()
            .contains("not a duration"));
        assert!(parse::<PositiveDuration>(serde_json::json!(10)).is_err());
        assert!(PositiveDuration::new(Duration::ZERO).is_none());
    }

    #[test]
    fn http_url() {
        let u: HttpUrl = parse(serde_json::json!("https://x:4317/p")).unwrap();
        assert_eq!(u.as_str(), "https://x:4317/p");
        assert!(parse::<HttpUrl>(serde_json::json!("http://x")).is_ok());
        assert_eq!(
            parse::<HttpUrl>(serde_json::json!("ftp://x")).unwrap_err(),
            "the scheme is `ftp`; it must be `http` or `https`"
        );
        assert!(parse::<HttpUrl>(serde_json::json!("localhost:4317")).is_err());
        assert!(parse::<HttpUrl>(serde_json::json!("not a url"))
            .unwrap_err()
            .contains("not a URL"));
    }

    #[test]
    fn fraction() {
        assert_eq!(parse::<Fraction>(serde_json::json!(0.5)).unwrap().get(), 0.5);
        assert_eq!(parse::<Fraction>(serde_json::json!(1)).unwrap().get(), 1.0);
        assert_eq!(parse::<Fraction>(serde_json::json!(0)).unwrap().get(), 0.0);
        for bad in [-0.1, 1.5] {
            assert_eq!(
                parse::<Fraction>(serde_json::json!(bad)).unwrap_err(),
                format!("must be between 0 and 1, not {bad}")
            );
        }
    }
}
