//! Documentation that must not drift from the code.

mod common;

#[test]
fn readme_lists_every_component_type() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for ty in common::registry().iter() {
        let row = format!("| {} | `{}` |", ty.kind, ty.name);
        assert!(
            readme.contains(&row),
            "README.md has no row `{row}` in its component table"
        );
    }
}

#[test]
fn every_component_type_has_an_example_config() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/examples");
    let examples: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    for ty in common::registry().iter() {
        let block = format!("{} \"{}\"", ty.kind, ty.name);
        assert!(
            examples.iter().any(|e| e.contains(&block)),
            "no example in configs/examples uses {block}"
        );
    }
}

#[test]
fn every_option_is_documented() {
    let mut generator = schemars::SchemaGenerator::default();
    for ty in common::registry().iter() {
        let schema = ty.schema(&mut generator);
        assert!(schema.get("description").is_some(), "{ty:?} has no doc comment");
        let properties = schema
            .get("properties")
            .and_then(|p| p.as_object())
            .cloned()
            .unwrap_or_default();
        for (name, property) in properties {
            assert!(
                property.get("description").is_some(),
                "{ty:?} option `{name}` has no doc comment"
            );
        }
    }
}
