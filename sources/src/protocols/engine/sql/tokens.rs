//! The `sqlparser` tokenizer, per dialect, with its error swallowed: the
//! caller falls back to a conservative scanner.

use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect};
use sqlparser::tokenizer::{Token, Tokenizer};

use super::Dialect;

/// Statements longer than this are not tokenized (the fallback scanner is
/// linear and cheap; the tokenizer allocates a token per word).
const MAX_TOKENIZED: usize = 64 * 1024;

/// The tokens of `sql`, or `None` when the tokenizer refuses it.
pub fn tokenize(sql: &str, dialect: Dialect) -> Option<Vec<Token>> {
    if sql.len() > MAX_TOKENIZED {
        return None;
    }
    let tokens = match dialect {
        Dialect::Postgres => Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize(),
        Dialect::Mysql => Tokenizer::new(&MySqlDialect {}, sql).tokenize(),
    };
    tokens.ok()
}
