//! What never leaves the engine as written: query-string values.
//! (Headers are kept only when allow-listed, credentials never: see
//! [`super::settings::NEVER_KEPT`]; bodies only when asked for.)

/// What a redacted value becomes.
pub const REDACTED: &str = "REDACTED";
/// Longest `url.query` kept.
const MAX_QUERY: usize = 512;

/// `a=1&b=2&flag` → `a=REDACTED&b=REDACTED&REDACTED`: names are kept,
/// values (and bare tokens, which are often keys themselves) are not.
pub fn query(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_QUERY));
    for (i, pair) in raw.split('&').enumerate() {
        if out.len() >= MAX_QUERY {
            break;
        }
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) => {
                out.extend(name.chars().take(64));
                out.push('=');
                out.push_str(REDACTED);
            }
            None if pair.is_empty() => {}
            None => out.push_str(REDACTED),
        }
    }
    out
}
