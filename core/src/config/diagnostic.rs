//! Config diagnostics: every mistake found in one pass, each with
//! `file:line:col` and, for a misspelt name, the nearest valid one.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A position in a config file, 1-based like editors show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: Arc<Path>,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// Turns byte offsets of one file into [`Location`]s.
#[derive(Clone, Debug)]
pub struct SourceMap {
    file: Arc<Path>,
    text: Arc<str>,
    line_starts: Vec<usize>,
}

impl SourceMap {
    /// Indexes `text`, read from `file`.
    pub fn new(file: impl Into<PathBuf>, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap {
            file: Arc::from(file.into()),
            text: Arc::from(text),
            line_starts,
        }
    }

    /// The file name.
    pub fn file(&self) -> &Arc<Path> {
        &self.file
    }

    /// The location of byte `offset`.
    pub fn locate(&self, offset: usize) -> Location {
        let line_index = self.line_starts.partition_point(|start| *start <= offset) - 1;
        let line_start = self.line_starts[line_index];
        let end = offset.min(self.text.len());
        let column = self.text.get(line_start..end).map_or(1, |s| s.chars().count() + 1);
        Location {
            file: self.file.clone(),
            line: line_index + 1,
            column,
        }
    }

    /// The location of the start of `span`, or of the file's start without one.
    pub fn locate_span(&self, span: Option<Range<usize>>) -> Location {
        self.locate(span.map_or(0, |s| s.start))
    }

    /// A location given as line and column.
    pub fn at(&self, line: usize, column: usize) -> Location {
        Location {
            file: self.file.clone(),
            line,
            column,
        }
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The config cannot run.
    Error,
    /// The config runs, but probably not as meant.
    Warning,
}

/// What kind of mistake a diagnostic reports; tests and tools match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiagnosticKind {
    /// The file could not be read.
    Io,
    /// HCL syntax error.
    Syntax,
    /// A block or attribute that does not belong where it is.
    UnexpectedItem,
    /// Unknown component type.
    UnknownType,
    /// Unknown option of a component or block.
    UnknownOption,
    /// A required option is missing.
    MissingOption,
    /// An option has the wrong type or value.
    InvalidValue,
    /// An expression could not be evaluated (`env("X")` of an unset variable).
    Evaluation,
    /// Two components share an id.
    DuplicateId,
    /// An input names no component.
    UnknownInput,
    /// An input names a sink, which has no output.
    InputIsSink,
    /// The inputs form a cycle.
    Cycle,
    /// An input emits no event kind the component accepts (or only some).
    IncompatibleKinds,
    /// A source or transform whose output nobody consumes.
    Unconsumed,
    /// A component with no inputs.
    NoInputs,
    /// A config without a single component.
    NoComponents,
}

/// One finding about a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What kind of mistake.
    pub kind: DiagnosticKind,
    /// Where, when known.
    pub location: Option<Location>,
    /// What is wrong.
    pub message: String,
    /// How to fix it (`did you mean \`interval\`?`).
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error.
    pub fn error(kind: DiagnosticKind, location: Option<Location>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            kind,
            location,
            message: message.into(),
            help: None,
        }
    }

    /// A warning.
    pub fn warning(kind: DiagnosticKind, location: Option<Location>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Self::error(kind, location, message)
        }
    }

    /// Adds a hint.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Adds "did you mean …" when a candidate is close to `wrong`.
    pub fn suggest<'a>(self, wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match did_you_mean(wrong, candidates) {
            Some(best) => self.with_help(format!("did you mean `{best}`?")),
            None => self,
        }
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The nearest candidate to `wrong`, if any is close enough to be a typo.
///
/// Jaro-Winkler rewards a shared prefix, which is how config typos look
/// (`intervall`, `disk_latancy`); 0.8 keeps unrelated names out.
pub fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    const MIN_SIMILARITY: f64 = 0.8;
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(wrong, c), c))
        .filter(|(score, _)| *score >= MIN_SIMILARITY)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A config that cannot run: all its errors (and warnings), in file order.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.diagnostics))]
pub struct ConfigError {
    /// Every finding; at least one is an error.
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let mut text = String::new();
    for d in diagnostics {
        text.push_str(&d.to_string());
        text.push('\n');
    }
    text.push_str(&format!(
        "{errors} error{} in config",
        if errors == 1 { "" } else { "s" }
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns() {
        let map = SourceMap::new("p.hcl", "a = 1\nsource \"x\" \"y\" {\n  é = 2\n}\n");
        assert_eq!(map.locate(0).to_string(), "p.hcl:1:1");
        assert_eq!(map.locate(6).to_string(), "p.hcl:2:1");
        // Line 3 starts at byte 23; `é` is two bytes but one column.
        assert_eq!(map.locate(23).to_string(), "p.hcl:3:1");
        assert_eq!(map.locate(27).column, 4);
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("intervall", ["interval", "rate"]), Some("interval"));
        assert_eq!(
            did_you_mean("disk_latancy", ["disk_latency", "demo"]),
            Some("disk_latency")
        );
        assert_eq!(did_you_mean("zzz", ["interval", "rate"]), None);
    }
}
