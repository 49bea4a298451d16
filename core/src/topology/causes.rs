//! An error's message with its causes, for a startup error a user reads
//! once: every cause that adds something, none twice.

/// `error` and each cause its message does not already hold, joined by
/// ": ": a builder's "builder error" gets its reason, and a message that
/// quotes its cause does not get it twice.
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::with_causes;

    #[derive(Debug, thiserror::Error)]
    #[error("builder error")]
    struct Opaque(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open /x: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn causes_are_added_once() {
        let opaque = Opaque(std::io::Error::other("invalid PEM"));
        assert_eq!(with_causes(&opaque), "builder error: invalid PEM");
        let quoting = Quoting(std::io::Error::other("denied"));
        assert_eq!(with_causes(&quoting), "cannot open /x: denied");
    }
}
