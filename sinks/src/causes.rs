//! Error text a user can act on: an error with every cause under it.
//! reqwest and hyper put the part that matters (`Connection refused`, the
//! host DNS could not resolve) in the source chain, which `Display` leaves
//! out.

/// `error` and every error under it, joined by `: `, each cause once
/// (hyper and reqwest often repeat their source in their own message).
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}
