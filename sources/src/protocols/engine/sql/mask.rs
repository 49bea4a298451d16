//! Tokens back to text with literals masked: everything that is not a
//! keyword, an identifier, a placeholder or punctuation becomes `?`, so a
//! literal kind the tokenizer gains later is masked too.

use sqlparser::tokenizer::{Token, Whitespace};

/// One output token.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    /// A literal, masked.
    Literal,
    /// Kept text.
    Text(String),
    /// `,`.
    Comma,
    /// `(`.
    Open,
    /// `)`.
    Close,
    /// Whitespace or a comment.
    Space,
}

/// Whether the tokenizer's reading of a token can be trusted: a
/// placeholder other than `?`, `$1` (at most 5 digits: 65535 parameters)
/// or `:name` is an unterminated dollar
/// quote (`$tag$ …`) read as a placeholder, whose text must be masked.
pub fn trusted(token: &Token) -> bool {
    match token {
        Token::Placeholder(p) => {
            p == "?"
                || p.strip_prefix('$')
                    .is_some_and(|n| (1..=5).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
                || p.strip_prefix(':')
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        }
        _ => true,
    }
}

fn classify(token: &Token) -> Out {
    match token {
        Token::Whitespace(Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_)) => Out::Space,
        Token::Whitespace(_) => Out::Space,
        Token::Word(_) | Token::Placeholder(_) => Out::Text(token.to_string()),
        Token::Comma => Out::Comma,
        Token::LParen => Out::Open,
        Token::RParen => Out::Close,
        Token::EOF => Out::Space,
        other => {
            let text = other.to_string();
            let punctuation = !text.is_empty()
                && text
                    .chars()
                    .all(|c| !c.is_alphanumeric() && !matches!(c, '\'' | '"' | '`' | '$' | '\\'));
            if punctuation {
                Out::Text(text)
            } else {
                Out::Literal
            }
        }
    }
}

/// The masked text of `tokens`: whitespace collapsed to one space,
/// comments dropped, a parenthesised list of literals (`IN (1, 2, 3)`)
/// one `(?)`.
pub fn render(tokens: &[Token]) -> String {
    let outs: Vec<Out> = tokens.iter().map(classify).collect();
    let mut text = String::new();
    let mut space = false;
    let mut i = 0;
    while i < outs.len() {
        let (piece, next) = match &outs[i] {
            Out::Space => {
                space = true;
                i += 1;
                continue;
            }
            Out::Open => match literal_list(&outs[i + 1..]) {
                Some(used) => ("(?)", i + 1 + used),
                None => ("(", i + 1),
            },
            Out::Close => (")", i + 1),
            Out::Comma => (",", i + 1),
            Out::Literal => ("?", i + 1),
            Out::Text(t) => (t.as_str(), i + 1),
        };
        if space && !text.is_empty() {
            text.push(' ');
        }
        space = false;
        text.push_str(piece);
        i = next;
    }
    text
}

/// When `rest` (after a `(`) is literals separated by commas up to a `)`,
/// how many outputs that is, the `)` included.
fn literal_list(rest: &[Out]) -> Option<usize> {
    let mut literals = 0;
    let mut expect_literal = true;
    for (n, out) in rest.iter().enumerate() {
        match out {
            Out::Space => {}
            Out::Literal if expect_literal => {
                literals += 1;
                expect_literal = false;
            }
            // A sign before a number: `(-1, 2)`.
            Out::Text(t) if expect_literal && (t == "-" || t == "+") => {}
            Out::Comma if !expect_literal => expect_literal = true,
            Out::Close if !expect_literal && literals > 0 => return Some(n + 1),
            _ => return None,
        }
    }
    None
}
