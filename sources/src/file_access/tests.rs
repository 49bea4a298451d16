use super::bpf::prefix_words;
use super::*;

#[test]
fn prefixes_cover_their_bytes_and_the_slash_after() {
    let words = prefix_words("/etc/");
    // "/etc/" is 5 bytes: the first word's mask covers them, no other.
    assert_eq!(words[8], u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]));
    assert!(words[9..].iter().all(|m| *m == 0));
    assert_eq!(&words[0].to_ne_bytes()[..5], b"/etc/");
    assert_eq!(prefix_words("/etc"), words, "with or without the trailing slash");
}

#[test]
fn flags_are_validated_and_turned_into_bits() {
    use sonde_core::SourceConfig;
    let config = FileAccessSourceConfig {
        matching: Match {
            flags: vec!["write".into(), "create".into()],
            path_prefix: vec!["/etc/".into()],
            ..Match::default()
        },
        ..FileAccessSourceConfig::default()
    };
    assert!(config.validate().is_ok());
    assert_eq!(config.access_bits(), bpf::FA_WRITE | bpf::FA_CREATE);
    let bad = FileAccessSourceConfig {
        matching: Match {
            flags: vec!["writ".into()],
            path_prefix: vec!["etc".into()],
            ..Match::default()
        },
        ..FileAccessSourceConfig::default()
    };
    let errors: Vec<String> = bad.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("match.flags")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("match.path_prefix")), "{errors:?}");
}

#[test]
fn errnos_have_their_names() {
    assert_eq!(errno_name(libc::ENOENT), "ENOENT");
    assert_eq!(errno_name(4095), "E4095");
}
