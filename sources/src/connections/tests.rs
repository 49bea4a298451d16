use super::bpf::Cidr;
use super::*;
use sonde_core::SourceConfig;

#[test]
fn cidrs_become_mapped_trie_keys() {
    let v4: Cidr = "10.0.0.0/8".parse().unwrap();
    let key = v4.key();
    assert_eq!(key.prefix_len(), 104);
    assert_eq!(key.data()[10..13], [0xff, 0xff, 10]);
    let host: Cidr = "::1".parse().unwrap();
    assert_eq!(host.key().prefix_len(), 128);
    assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    assert!("nope/8".parse::<Cidr>().is_err());
}

#[test]
fn options_are_validated_and_make_the_policy() {
    let config = ConnectionsSourceConfig {
        directions: vec!["connect".into()],
        protocols: vec!["tcp".into(), "udp".into()],
        matching: Match {
            cidr: vec!["10.0.0.0/8".into()],
            exclude_cidr: vec!["10.1.0.0/16".into()],
            port: vec![443],
            ..Match::default()
        },
        ..ConnectionsSourceConfig::default()
    };
    assert!(config.validate().is_ok());
    let policy = config.policy();
    assert!(policy.connect && !policy.accept && !policy.listen && policy.tcp && policy.udp);
    assert_eq!(
        (policy.allow.len(), policy.deny.len(), policy.ports.as_slice()),
        (1, 1, &[443][..])
    );
    let bad = ConnectionsSourceConfig {
        directions: vec!["conect".into()],
        matching: Match {
            cidr: vec!["10.0.0.0/40".into()],
            ..Match::default()
        },
        ..ConnectionsSourceConfig::default()
    };
    let errors: Vec<String> = bad.validate().unwrap_err().iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("directions") && e.contains("did you mean `connect`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("match.cidr") && e.contains("0 to 32")),
        "{errors:?}"
    );
}

#[test]
fn connect_errors_have_their_names() {
    assert_eq!(errno_name(libc::ECONNREFUSED), "ECONNREFUSED");
    assert_eq!(errno_name(libc::ENOENT), "ENOENT");
}
