//! `sonde schema` is a JSON Schema that a real validator (Python's
//! `jsonschema`, installed into `.venv` by `cargo xtask test`) can use: it
//! is a valid schema, every `$ref` resolves, every shipped config (as JSON,
//! HCL's JSON shape) passes it, and a misspelt option fails it.

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// Checks the schema, then validates each instance; prints one JSON object:
/// `{"schema_errors": [...], "dangling": [...], "results": {name: [errors]}}`.
const VALIDATE: &str = r##"
import json, sys
import jsonschema
from jsonschema import validators
schema = json.load(open(sys.argv[1]))
instances = json.load(open(sys.argv[2]))
cls = validators.validator_for(schema)
schema_errors = [e.message for e in cls(cls.META_SCHEMA).iter_errors(schema)]
dangling = []
def walk(node):
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = schema
            for part in ref.lstrip("#/").split("/"):
                if not isinstance(target, dict) or part not in target:
                    dangling.append(ref)
                    break
                target = target[part]
        for value in node.values():
            walk(value)
    elif isinstance(node, list):
        for value in node:
            walk(value)
walk(schema)
validator = cls(schema)
results = {name: [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
           for name, doc in instances.items()}
print(json.dumps({"schema_errors": schema_errors, "dangling": dangling, "results": results}))
"##;

fn python() -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let ready = std::process::Command::new(&python)
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        ".venv with jsonschema is missing: `cargo xtask test` installs it"
    );
    eprintln!("skipped: .venv/bin/python with jsonschema missing (cargo xtask test installs it)");
    None
}

/// A pipeline file as the JSON document HCL's JSON syntax would give:
/// `{"agent": {…}, "source": {"TYPE": {"ID": {…}}}, …}`, with every
/// expression evaluated by sonde's own loader.
fn as_json(path: &Path) -> Value {
    let loaded =
        sonde_core::config::load_file(path, &common::registry()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut document = Map::new();
    let text = std::fs::read_to_string(path).unwrap();
    if text.lines().any(|l| l.trim_start().starts_with("agent")) {
        let agent = &loaded.config.agent;
        let mut block = Map::new();
        block.insert("api".into(), json!(agent.api.map(|a| a.to_string())));
        if let Some(name) = &agent.node_name {
            block.insert("node_name".into(), json!(name));
        }
        block.insert(
            "shutdown_grace".into(),
            json!(humantime::format_duration(agent.shutdown_grace).to_string()),
        );
        document.insert("agent".into(), Value::Object(block));
    }
    for component in &loaded.config.components {
        let kind = document
            .entry(component.kind.as_str())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
        let ty = kind.entry(component.type_name).or_insert_with(|| json!({}));
        ty[&*component.id] = component.raw.clone();
    }
    Value::Object(document)
}

fn shipped_configs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .collect();
    paths.push(root.join("default.hcl"));
    paths.sort();
    assert!(paths.len() > 10, "{paths:?}");
    paths
}

#[test]
fn schema_accepts_every_shipped_config_and_rejects_misspelt_options() {
    let Some(python) = python() else { return };
    let output = common::sonde().arg("schema").output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let dir = tempfile::tempdir().unwrap();
    let schema_path = dir.path().join("schema.json");
    std::fs::write(&schema_path, &output.stdout).unwrap();

    let mut instances = Map::new();
    for path in shipped_configs() {
        instances.insert(path.display().to_string(), as_json(&path));
    }
    // The README's pipeline: a sink with `buffer` and `request` blocks.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let pipeline = readme
        .split("```hcl\n# pipeline.hcl\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README's pipeline.hcl");
    let readme_path = dir.path().join("pipeline.hcl");
    std::fs::write(&readme_path, pipeline).unwrap();
    instances.insert("README pipeline.hcl".into(), as_json(&readme_path));

    let demo = as_json(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/examples/demo.hcl"));
    let mut misspelt = demo.clone();
    let (_, source) = misspelt["source"]["demo"]
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .next()
        .unwrap();
    source["conut"] = json!(5);
    instances.insert("misspelt source option".into(), misspelt);
    let mut nested = demo.clone();
    let (_, sink) = nested["sink"].as_object_mut().unwrap().iter_mut().next().unwrap();
    let (_, sink) = sink.as_object_mut().unwrap().iter_mut().next().unwrap();
    sink["buffer"] = json!({"max_event": 5});
    instances.insert("misspelt buffer option".into(), nested);
    let mut no_inputs = demo;
    let (_, sink) = no_inputs["sink"].as_object_mut().unwrap().iter_mut().next().unwrap();
    let (_, sink) = sink.as_object_mut().unwrap().iter_mut().next().unwrap();
    sink.as_object_mut().unwrap().remove("inputs");
    instances.insert("sink without inputs".into(), no_inputs);

    let instances_path = dir.path().join("instances.json");
    std::fs::write(&instances_path, serde_json::to_vec(&instances).unwrap()).unwrap();
    let output = std::process::Command::new(python)
        .args(["-c", VALIDATE])
        .arg(&schema_path)
        .arg(&instances_path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["schema_errors"], json!([]), "not a valid JSON Schema");
    assert_eq!(report["dangling"], json!([]), "dangling $refs");
    for (name, errors) in report["results"].as_object().unwrap() {
        let errors = errors.as_array().unwrap();
        let expect_invalid = [
            "misspelt source option",
            "misspelt buffer option",
            "sink without inputs",
        ];
        if expect_invalid.contains(&name.as_str()) {
            assert_eq!(errors.len(), 1, "{name}: {errors:?}");
            let wanted = match name.as_str() {
                "misspelt source option" => "conut",
                "misspelt buffer option" => "max_event",
                _ => "inputs",
            };
            assert!(errors[0].as_str().unwrap().contains(wanted), "{name}: {errors:?}");
        } else {
            assert!(errors.is_empty(), "{name} fails the schema: {errors:?}");
        }
    }
}
