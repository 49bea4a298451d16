//! SQL text for database spans: literals masked (`db.query.text`), a short
//! summary (`db.query.summary`) and the operation (`db.operation.name`).
//!
//! The statement is cut into tokens by `sqlparser`'s tokenizer, which knows
//! each dialect's literals (PostgreSQL's dollar quotes and `E''` strings,
//! MySQL's backslash escapes and `X''`/`0x` hex), so a quote inside a
//! string never ends it early. Text the tokenizer refuses (cut mid-string by
//! the capture, or not SQL at all) goes through [`fallback`], a scanner that
//! masks anything quoted or numeric: a literal never leaves the engine.

mod fallback;
mod mask;
mod summary;
mod tokens;

pub use summary::{operation, summary};

use super::settings::Queries;

/// Which tokenizer rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$1` placeholders, dollar-quoted strings, `"ident"`.
    Postgres,
    /// MySQL and MariaDB: `?` placeholders, backslash escapes, `"string"`.
    Mysql,
}

/// Longest `db.query.summary`.
pub const MAX_SUMMARY: usize = 255;

/// `sql` with every literal (strings, numbers, hex, dollar quotes, lists of
/// them) replaced by `?`, comments dropped and whitespace collapsed, cut at
/// `max_length` characters; the flag says whether it was cut.
pub fn obfuscate(sql: &str, dialect: Dialect, max_length: usize) -> (String, bool) {
    let masked = match tokens::tokenize(sql, dialect) {
        Some(tokens) if tokens.iter().all(mask::trusted) => mask::render(&tokens),
        _ => fallback::mask(sql),
    };
    truncate(masked, max_length)
}

/// What a span keeps of one statement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Described {
    /// `db.query.text`: obfuscated unless settings say otherwise, cut.
    pub query: Option<String>,
    /// The text was cut (by the settings' length, or by the capture).
    pub truncated: bool,
    /// `db.query.summary`.
    pub summary: Option<String>,
    /// `db.operation.name`.
    pub operation: Option<&'static str>,
}

impl Described {
    /// Bytes held by its strings.
    pub fn memory(&self) -> usize {
        self.query.as_ref().map_or(0, String::len) + self.summary.as_ref().map_or(0, String::len)
    }
}

/// Describes one statement per the settings; `cut` when the captured text
/// is only a prefix of the statement.
pub fn describe(sql: &str, dialect: Dialect, queries: &Queries, cut: bool) -> Described {
    let sql = sql.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    if sql.is_empty() {
        return Described::default();
    }
    let (query, truncated) = if queries.obfuscate {
        obfuscate(sql, dialect, queries.max_length)
    } else {
        truncate(sql.to_owned(), queries.max_length)
    };
    Described {
        query: Some(query),
        truncated: truncated || cut,
        summary: summary(sql, dialect),
        operation: operation(sql),
    }
}

/// The statements of a multi-statement text (`BEGIN; INSERT …; COMMIT`),
/// split at top-level semicolons; empty ones dropped. Text the tokenizer
/// refuses stays one statement.
pub fn split(sql: &str, dialect: Dialect) -> Vec<String> {
    let Some(tokens) = tokens::tokenize(sql, dialect) else {
        return vec![sql.to_owned()];
    };
    let mut out = Vec::new();
    let mut current = String::new();
    for token in &tokens {
        if matches!(token, sqlparser::tokenizer::Token::SemiColon) {
            push_statement(&mut out, &mut current);
        } else {
            current.push_str(&token.to_string());
        }
    }
    push_statement(&mut out, &mut current);
    out
}

fn push_statement(out: &mut Vec<String>, current: &mut String) {
    let statement = std::mem::take(current);
    if !statement.trim().is_empty() {
        out.push(statement.trim().to_owned());
    }
}

/// `text` cut to `max` characters (on a character boundary).
pub fn truncate(mut text: String, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => {
            text.truncate(at);
            (text, true)
        }
        None => (text, false),
    }
}
