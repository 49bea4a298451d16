//! `db.operation.name` (the statement's first keyword, from a bounded
//! vocabulary: it labels metrics) and `db.query.summary` (the operation
//! and up to three target tables, identifiers only: never a literal).

use sqlparser::tokenizer::Token;

use super::{tokens, Dialect, MAX_SUMMARY};

/// Operations reported; any other first keyword gives no operation.
const OPERATIONS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "MERGE",
    "UPSERT",
    "VALUES",
    "TABLE",
    "WITH",
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "RENAME",
    "GRANT",
    "REVOKE",
    "SET",
    "RESET",
    "SHOW",
    "USE",
    "EXPLAIN",
    "ANALYZE",
    "VACUUM",
    "COPY",
    "CALL",
    "EXECUTE",
    "EXEC",
    "PREPARE",
    "DEALLOCATE",
    "DECLARE",
    "FETCH",
    "MOVE",
    "CLOSE",
    "LOCK",
    "UNLOCK",
    "LISTEN",
    "NOTIFY",
    "UNLISTEN",
    "DISCARD",
    "DO",
    "DESCRIBE",
    "DESC",
    "HANDLER",
    "LOAD",
    "OPTIMIZE",
    "CHECKPOINT",
    "REINDEX",
    "CLUSTER",
    "COMMENT",
    "REFRESH",
    "KILL",
    "FLUSH",
    "CHECKSUM",
    "REPAIR",
    "XA",
    "SECURITY",
];

/// Most tables named in a summary.
const MAX_TARGETS: usize = 3;

/// The first keyword of `sql` upper-cased, when in the vocabulary (comments,
/// whitespace and opening parentheses before it skipped); `WITH …` gives
/// the operation of the statement the common table expressions feed.
pub fn operation(sql: &str) -> Option<&'static str> {
    let word = first_word(sql)?;
    let known = OPERATIONS.iter().copied().find(|op| op.eq_ignore_ascii_case(word))?;
    if known == "WITH" {
        return main_after_with(sql);
    }
    Some(known)
}

fn first_word(sql: &str) -> Option<&str> {
    let mut rest = sql;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == '\0');
        if let Some(comment) = rest.strip_prefix("--") {
            rest = comment.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = comment.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    let end = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// The first of SELECT/INSERT/UPDATE/DELETE/MERGE outside parentheses.
fn main_after_with(sql: &str) -> Option<&'static str> {
    let tokens = tokens::tokenize(sql, Dialect::Postgres)?;
    let mut depth = 0i32;
    for token in &tokens {
        match token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                let main = ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"];
                if let Some(op) = main.iter().find(|op| op.eq_ignore_ascii_case(&w.value)) {
                    return Some(op);
                }
            }
            _ => {}
        }
    }
    Some("WITH")
}

/// `db.query.summary`: the operation and the tables it reads or writes
/// (`SELECT users orders`, `INSERT orders`), at most three tables and
/// [`MAX_SUMMARY`] characters; just the operation when no table is named.
pub fn summary(sql: &str, dialect: Dialect) -> Option<String> {
    let operation = operation(sql)?;
    let words: Vec<Token> = tokens::tokenize(sql, dialect)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut targets: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() && targets.len() < MAX_TARGETS {
        let Token::Word(w) = &words[i] else {
            i += 1;
            continue;
        };
        let keyword = w.value.to_ascii_uppercase();
        let introduces = match (operation, keyword.as_str()) {
            (op, "FROM" | "JOIN" | "INTO") if w.quote_style.is_none() && op != "COPY" => true,
            ("UPDATE", "UPDATE") | ("TRUNCATE", "TRUNCATE") | ("COPY", "COPY") | ("LOCK", "TABLE") => i == 0 || i == 1,
            _ => false,
        };
        i += 1;
        if !introduces {
            continue;
        }
        // `FROM a, b`: every table of the list.
        loop {
            while let Some(Token::Word(w)) = words.get(i) {
                let skip = ["ONLY", "LOW_PRIORITY", "IGNORE", "TABLE", "LATERAL"];
                if w.quote_style.is_none() && skip.iter().any(|s| s.eq_ignore_ascii_case(&w.value)) {
                    i += 1;
                } else {
                    break;
                }
            }
            let (name, used) = identifier(&words[i..]);
            i += used;
            match name {
                Some(name) if !targets.contains(&name) && targets.len() < MAX_TARGETS => targets.push(name),
                _ => {}
            }
            // An alias (`users u`, `users AS u`), then a comma continues the list.
            while let Some(Token::Word(_)) = words.get(i) {
                if is_clause(&words[i]) {
                    break;
                }
                i += 1;
            }
            if used > 0 && matches!(words.get(i), Some(Token::Comma)) && keyword == "FROM" {
                i += 1;
                continue;
            }
            break;
        }
    }
    let mut text = operation.to_owned();
    for target in targets {
        if text.len() + 1 + target.len() > MAX_SUMMARY {
            break;
        }
        text.push(' ');
        text.push_str(&target);
    }
    Some(text)
}

/// A keyword that starts a clause (ends a table list's alias).
fn is_clause(token: &Token) -> bool {
    let Token::Word(w) = token else { return false };
    const CLAUSES: &[&str] = &[
        "WHERE",
        "JOIN",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "CROSS",
        "NATURAL",
        "ON",
        "USING",
        "GROUP",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "HAVING",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "SET",
        "VALUES",
        "SELECT",
        "FOR",
        "WINDOW",
        "RETURNING",
        "FROM",
        "TO",
        "WITH",
        "DEFAULT",
        "OUTER",
        "STRAIGHT_JOIN",
        "PARTITION",
    ];
    w.quote_style.is_none() && CLAUSES.iter().any(|c| c.eq_ignore_ascii_case(&w.value))
}

/// A possibly qualified identifier (`schema.table`) at the start of
/// `tokens`: its text (at most 64 characters a part) and tokens used.
fn identifier(tokens: &[Token]) -> (Option<String>, usize) {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    loop {
        match tokens.get(i) {
            Some(Token::Word(w)) if !(w.quote_style.is_none() && is_clause(&tokens[i])) => {
                parts.push(w.value.chars().take(64).collect());
                i += 1;
            }
            _ => break,
        }
        if matches!(tokens.get(i), Some(Token::Period)) && matches!(tokens.get(i + 1), Some(Token::Word(_))) {
            i += 1;
        } else {
            break;
        }
    }
    if parts.is_empty() {
        (None, 0)
    } else {
        (Some(parts.join(".")), i)
    }
}
