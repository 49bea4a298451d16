//! What a component config's `validate` returns: the options whose values
//! it refuses, for the config loader to report at their `file:line:col`.
//! Here, with the traits, because they return it; the loader (a higher
//! layer) turns each into a diagnostic.

use std::fmt;

/// One option whose value a config's `validate` refuses: checks that no
/// parse-time type expresses (a range, options that contradict each other).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The option's path: `interval`, `buffer.max_events`, `tls.cert_file`.
    pub option: &'static str,
    /// What is wrong, without the option's name (the diagnostic adds it):
    /// `must be at least 100ms`.
    pub message: String,
}

impl Invalid {
    /// `option` is wrong because of `message`.
    pub fn new(option: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            option,
            message: message.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.option, self.message)
    }
}

/// Collects [`Invalid`]s: `check.that(cond, "option", "message")`.
#[derive(Debug, Default)]
pub struct Checks(Vec<Invalid>);

impl Checks {
    /// No findings yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `message` against `option` unless `ok`.
    pub fn that(&mut self, ok: bool, option: &'static str, message: impl fmt::Display) -> &mut Self {
        if !ok {
            self.0.push(Invalid::new(option, message.to_string()));
        }
        self
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), Vec<Invalid>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_collect_every_finding() {
        let mut checks = Checks::new();
        checks
            .that(true, "a", "fine")
            .that(false, "b", "must be at least 1")
            .that(false, "c", "x");
        let found = checks.finish().unwrap_err();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].to_string(), "`b` must be at least 1");
    }
}
