//! The scanner used when the tokenizer refuses a statement (cut by the
//! capture inside a string, or odd input): it knows nothing of SQL but
//! quotes, comments and digits, and masks anything that might be a
//! literal, an unterminated quote masking the rest of the text.

/// `sql` with quoted runs (`'…'`, `"…"`, `$tag$…$tag$`), numbers and hex
/// replaced by `?`, comments dropped and whitespace collapsed.
pub fn mask(sql: &str) -> String {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len().min(4096));
    let mut space = false;
    let mut i = 0;
    let put = |out: &mut String, space: &mut bool, text: &str| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push_str(text);
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() || c == '\0' {
            space = true;
            i += 1;
        } else if c == '-' && next == Some('-') || c == '#' {
            i = find(&chars, i, |c| c == '\n').unwrap_or(chars.len());
            space = true;
        } else if c == '/' && next == Some('*') {
            i = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            space = true;
        } else if c == '\'' || c == '"' {
            i = closing_quote(&chars, i + 1, c);
            put(&mut out, &mut space, "?");
        } else if c == '$'
            && next.is_some_and(|n| n.is_ascii_digit())
            && !word_before(&chars, i)
            && find(&chars, i + 1, |c| !c.is_ascii_digit()).unwrap_or(chars.len()) <= i + 6
        {
            // `$1`: a placeholder (at most 65535 of them: 5 digits).
            let end = find(&chars, i + 1, |c| !c.is_ascii_digit()).unwrap_or(chars.len());
            let text: String = chars[i..end].iter().collect();
            put(&mut out, &mut space, &text);
            i = end;
        } else if c == '$' {
            // `$tag$…$tag$` (or `$$…$$`); unterminated masks the rest.
            let end_tag = find(&chars, i + 1, |c| !(c.is_alphanumeric() || c == '_'));
            match end_tag.filter(|&j| chars[j] == '$') {
                Some(j) => {
                    let tag: Vec<char> = chars[i..=j].to_vec();
                    i = (j + 1..chars.len())
                        .find(|&k| chars[k..].starts_with(&tag))
                        .map_or(chars.len(), |k| k + tag.len());
                    put(&mut out, &mut space, "?");
                }
                None => {
                    put(&mut out, &mut space, "?");
                    i += 1;
                }
            }
        } else if (c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())))
            && !word_before(&chars, i)
        {
            // Digits, hex (`0x1F`), decimals and exponents.
            i = find(&chars, i, |c| !(c.is_alphanumeric() || c == '.' || c == '_')).unwrap_or(chars.len());
            put(&mut out, &mut space, "?");
        } else if c.is_alphanumeric() || c == '_' || c == '`' {
            let end = if c == '`' {
                closing_quote(&chars, i + 1, '`')
            } else {
                find(&chars, i, |c| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(chars.len())
            };
            let word: String = chars[i..end].iter().collect();
            if c == '`' && !word.ends_with('`') || word == "`" {
                // An unterminated name quote: what follows may be anything.
                put(&mut out, &mut space, "?");
                i = end;
                continue;
            }
            // `X'…'`, `E'…'`, `N'…'`, `B'…'`: a prefixed string.
            if chars.get(end) == Some(&'\'') && word.len() <= 2 {
                i = closing_quote(&chars, end + 1, '\'');
                put(&mut out, &mut space, "?");
            } else {
                put(&mut out, &mut space, &word);
                i = end;
            }
        } else {
            put(&mut out, &mut space, &c.to_string());
            i += 1;
        }
    }
    out
}

fn find(chars: &[char], from: usize, stop: impl Fn(char) -> bool) -> Option<usize> {
    (from..chars.len()).find(|&j| stop(chars[j]))
}

/// Whether the character before `i` continues a word (`t1`, `col_2`).
fn word_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// The index after the quote closing one opened before `from`; doubled
/// quotes and backslash escapes stay inside; unterminated: the end.
fn closing_quote(chars: &[char], from: usize, quote: char) -> usize {
    let mut j = from;
    while j < chars.len() {
        if chars[j] == '\\' {
            j += 2;
        } else if chars[j] == quote {
            if chars.get(j + 1) == Some(&quote) {
                j += 2;
            } else {
                return j + 1;
            }
        } else {
            j += 1;
        }
    }
    chars.len()
}
