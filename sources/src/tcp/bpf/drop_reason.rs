//! Names of the kernel's packet drop reasons (`enum skb_drop_reason`,
//! 5.17+), read from the `skb:kfree_skb` event's format in tracefs, where
//! the kernel prints them with `__print_symbolic(REC->reason, { 2,
//! "NOT_SPECIFIED" }, …)`. The numbers change between kernels; the names
//! are what users look up.

use std::collections::HashMap;
use std::path::PathBuf;

/// The reason names of the running kernel, by number; empty when the
/// format cannot be read (reasons are then reported by number).
pub fn drop_reason_names() -> HashMap<u32, String> {
    let roots = [
        sonde_ebpf::system::find_mount("tracefs"),
        Some(PathBuf::from(sonde_ebpf::system::TRACEFS)),
        Some(PathBuf::from(sonde_ebpf::system::DEBUGFS).join("tracing")),
    ];
    roots
        .into_iter()
        .flatten()
        .find_map(|root| std::fs::read_to_string(root.join("events/skb/kfree_skb/format")).ok())
        .map(|format| parse_print_symbolic(&format))
        .unwrap_or_default()
}

/// The `{ number, "NAME" }` pairs of a format's `__print_symbolic(REC->reason, …)`.
pub fn parse_print_symbolic(format: &str) -> HashMap<u32, String> {
    let Some(start) = format.find("__print_symbolic(REC->reason") else {
        return HashMap::new();
    };
    let mut names = HashMap::new();
    let mut rest = &format[start..];
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let pair = &rest[..close];
        rest = &rest[close + 1..];
        let Some((number, name)) = pair.split_once(',') else {
            continue;
        };
        if let Ok(number) = number.trim().parse::<u32>() {
            names.insert(number, name.trim().trim_matches('"').to_string());
        }
    }
    names
}

/// The attribute value of reason `reason`: its kernel name, or its number.
pub fn reason_name(names: &HashMap<u32, String>, reason: u32) -> String {
    names.get(&reason).cloned().unwrap_or_else(|| reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_symbolic_table() {
        let format = r#"print fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" }, { 10, "TCP_CSUM" })"#;
        let names = parse_print_symbolic(format);
        assert_eq!(names.len(), 3);
        assert_eq!(names[&3], "NO_SOCKET");
        assert_eq!(reason_name(&names, 10), "TCP_CSUM");
        assert_eq!(reason_name(&names, 99), "99");
        assert!(parse_print_symbolic("print fmt: \"x\"").is_empty());
    }
}
