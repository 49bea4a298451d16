use super::*;

#[test]
fn defaults_validate_and_bad_sizes_are_named() {
    use sonde_core::SourceConfig;
    assert!(FileIoSourceConfig::default().validate().is_ok());
    let bad = FileIoSourceConfig {
        top_files: 0,
        max_files: 0,
        ..FileIoSourceConfig::default()
    };
    let errors = bad.validate().unwrap_err();
    let fields: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(errors.len(), 2, "{fields:?}");
    assert!(fields.iter().any(|f| f.contains("max_files")), "{fields:?}");
    assert!(fields.iter().any(|f| f.contains("top_files")), "{fields:?}");
}
