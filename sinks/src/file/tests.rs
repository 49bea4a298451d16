use super::*;

#[test]
fn rotates_by_size_and_keeps_max_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/events.jsonl");
    let mut file = RotatingFile::open(&path, 10, 2).unwrap();
    for i in 0..5 {
        file.write_lines(format!("line{i}xx\n").as_bytes()).unwrap();
    }
    // Each 8-byte line fills most of a 10-byte file: every write rotates.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "line4xx\n");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/events.jsonl.1")).unwrap(),
        "line3xx\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/events.jsonl.2")).unwrap(),
        "line2xx\n"
    );
    assert!(!dir.path().join("sub/events.jsonl.3").exists());
}

#[test]
fn opening_an_unwritable_path_names_it() {
    let error = RotatingFile::open(std::path::Path::new("/proc/sonde-cannot/x.jsonl"), 0, 0).unwrap_err();
    assert!(error.to_string().contains("/proc/sonde-cannot/x.jsonl"), "{error}");
}
