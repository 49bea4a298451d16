//! Golden tests of config diagnostics: each kind of mistake gives its
//! message with file:line:col and, where it applies, a suggestion.

mod common;

use sonde_core::config::{load_str, DiagnosticKind, Severity};

/// Loads `text` as `p.hcl` and returns every diagnostic rendered.
fn diagnostics(text: &str) -> Vec<String> {
    match load_str("p.hcl", text, &common::registry()) {
        Ok(loaded) => loaded.warnings.iter().map(ToString::to_string).collect(),
        Err(error) => error.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn assert_one(text: &str, expected: &str) {
    let found = diagnostics(text);
    assert!(
        found.iter().any(|d| d == expected),
        "expected diagnostic:\n{expected}\nfound:\n{}",
        found.join("\n---\n")
    );
}

#[test]
fn misspelt_type_suggests_the_nearest() {
    assert_one(
        "source \"dmeo\" \"a\" {}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        "p.hcl:1:8: error: unknown source type `dmeo`\n  help: did you mean `demo`?",
    );
}

#[test]
fn misspelt_option_suggests_the_nearest() {
    assert_one(
        "source \"demo\" \"a\" {\n  rate = 1\n  conut = 5\n}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        "p.hcl:3:3: error: unknown option `conut` in source \"demo\"\n  help: did you mean `count`?",
    );
}

#[test]
fn misspelt_nested_option_is_located() {
    assert_one(
        "source \"demo\" \"a\" {}\nsink \"blackhole\" \"b\" {\n  inputs = [\"a\"]\n  buffer {\n    max_event = 5\n  }\n}\n",
        "p.hcl:5:5: error: unknown option `buffer.max_event` in sink \"blackhole\"\n  help: did you mean `max_events`?",
    );
}

#[test]
fn misspelt_input_suggests_the_nearest() {
    assert_one(
        "source \"demo\" \"generator\" {}\nsink \"blackhole\" \"b\" { inputs = [\"genrator\"] }\n",
        "p.hcl:2:34: error: input `genrator` of `b` names no component\n  help: did you mean `generator`?",
    );
}

#[test]
fn wrong_value_type_is_located() {
    assert_one(
        "source \"demo\" \"a\" {\n  rate = \"fast\"\n}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        "p.hcl:2:3: error: invalid value for `rate` in source \"demo\": invalid type: string \"fast\", expected f64",
    );
}

#[test]
fn wrong_enum_value_suggests() {
    assert_one(
        "source \"demo\" \"a\" {\n  kind = \"logs\"\n}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        "p.hcl:2:3: error: invalid value `logs` for `kind` in source \"demo\"\n  help: did you mean `log`?",
    );
}

#[test]
fn missing_required_option() {
    assert_one(
        "source \"demo\" \"a\" {}\nsink \"file\" \"f\" {\n  inputs = [\"a\"]\n}\n",
        "p.hcl:2:1: error: sink \"file\" needs option `path`",
    );
}

#[test]
fn duplicate_ids_point_at_both() {
    assert_one(
        "source \"demo\" \"a\" {}\nsource \"demo\" \"a\" {}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        "p.hcl:2:15: error: duplicate component id `a`\n  help: `a` is already the id of the source at p.hcl:1:15",
    );
}

#[test]
fn cycles_are_named_in_flow_order() {
    let found = diagnostics(
        "source \"demo\" \"s\" {}\ntransform \"tag\" \"x\" { inputs = [\"s\", \"y\"] }\ntransform \"tag\" \"y\" { inputs = [\"x\"] }\nsink \"blackhole\" \"b\" { inputs = [\"y\"] }\n",
    );
    assert!(
        found.iter().any(|d| d.contains("error: inputs form a cycle: y → x → y")
            || d.contains("error: inputs form a cycle: x → y → x")),
        "{found:?}"
    );
}

/// A sink that accepts only metrics, to test the kind checks.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct MetricsOnlySinkConfig {}

impl sonde_core::SinkConfig for MetricsOnlySinkConfig {
    fn accepts(&self) -> sonde_core::EventKinds {
        sonde_core::EventKinds::METRIC
    }
    fn build(&self, _: &sonde_core::SinkContext) -> Result<sonde_core::Sink, sonde_core::BoxError> {
        Err("not built in this test".into())
    }
}

#[test]
fn incompatible_event_kinds_are_errors_or_warnings() {
    let mut registry = common::registry();
    registry.sink::<MetricsOnlySinkConfig>();
    let text = "source \"demo\" \"logs\" { kind = \"log\" }\nsource \"demo\" \"metrics\" {}\n\
                transform \"tag\" \"both\" { inputs = [\"logs\", \"metrics\"] }\n\
                sink \"metrics_only\" \"m\" { inputs = [\"logs\", \"both\"] }\n";
    let error = load_str("p.hcl", text, &registry).unwrap_err();
    let rendered: Vec<String> = error.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        rendered.contains(&"p.hcl:4:37: error: `logs` emits log, but sink \"metrics_only\" \"m\" accepts only metric\n  help: connect it to a component that accepts these events, or filter them first".to_string()),
        "{rendered:#?}"
    );
    assert!(
        rendered.contains(&"p.hcl:4:45: warning: log events from `both` will be dropped before sink \"metrics_only\" \"m\", which accepts only metric".to_string()),
        "{rendered:#?}"
    );
}

#[test]
fn unconsumed_source_is_a_warning() {
    let loaded = load_str(
        "p.hcl",
        "source \"demo\" \"a\" {}\nsource \"demo\" \"lonely\" {}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        &common::registry(),
    )
    .expect("warnings do not fail the load");
    let warning = &loaded.warnings[0];
    assert_eq!(warning.severity, Severity::Warning);
    assert_eq!(warning.kind, DiagnosticKind::Unconsumed);
    assert_eq!(
        warning.to_string(),
        "p.hcl:2:15: warning: nothing consumes the output of source `lonely`\n  help: add `lonely` to the inputs of a transform or sink"
    );
}

#[test]
fn unset_env_var_is_an_error_and_fallback_works() {
    assert_one(
        "source \"demo\" \"a\" {}\nsink \"file\" \"f\" {\n  inputs = [\"a\"]\n  path = env(\"SONDE_TEST_SURELY_UNSET\")\n}\n",
        "p.hcl:4:10: error: cannot evaluate `path`: error calling function `env`: environment variable `SONDE_TEST_SURELY_UNSET` is not set (give a fallback: env(\"SONDE_TEST_SURELY_UNSET\", \"value\")) in expression `env(\"SONDE_TEST_SURELY_UNSET\")`",
    );
    let found = diagnostics(
        "source \"demo\" \"a\" {}\nsink \"file\" \"f\" {\n  inputs = [\"a\"]\n  path = env(\"SONDE_TEST_SURELY_UNSET\")\n}\n",
    );
    assert!(
        !found.iter().any(|d| d.contains("needs option")),
        "no follow-on error: {found:?}"
    );
    std::env::set_var("SONDE_TEST_DIR", "/tmp/x");
    let loaded = load_str(
        "p.hcl",
        "source \"demo\" \"a\" {}\nsink \"file\" \"f\" {\n  inputs = [\"a\"]\n  path = \"${env(\"SONDE_TEST_DIR\")}/${env(\"SONDE_TEST_SURELY_UNSET\", \"d\")}.jsonl\"\n}\n",
        &common::registry(),
    )
    .unwrap();
    assert_eq!(loaded.config.components[1].raw["path"], "/tmp/x/d.jsonl");
}

#[test]
fn syntax_errors_are_located() {
    let found = diagnostics("source \"demo\" \"a\" {\n  rate = \n}\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("p.hcl:2:10: error: HCL syntax: invalid expression"),
        "{found:?}"
    );
}

#[test]
fn every_mistake_is_reported_in_one_pass() {
    let error = load_str(
        "p.hcl",
        "sourse \"demo\" \"a\" {}\nsource \"demo\" \"b\" { rat = 1 }\nsink \"blackhole\" \"c\" { inputs = [\"x\"] }\nsink \"fil\" \"d\" { inputs = [\"b\"] }\n",
        &common::registry(),
    )
    .unwrap_err();
    let kinds: Vec<DiagnosticKind> = error.errors().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        vec![
            DiagnosticKind::UnexpectedItem,
            DiagnosticKind::UnknownOption,
            DiagnosticKind::UnknownInput,
            DiagnosticKind::UnknownType
        ],
        "{error}"
    );
    assert!(error.to_string().ends_with("4 errors in config"), "{error}");
}

#[test]
fn sources_take_no_inputs_and_transforms_no_buffer() {
    assert_one(
        "source \"demo\" \"a\" {\n  inputs = []\n}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        "p.hcl:2:3: error: sources take no `inputs` option",
    );
    assert_one(
        "source \"demo\" \"a\" {}\ntransform \"tag\" \"t\" {\n  inputs = [\"a\"]\n  buffer { max_events = 1 }\n}\nsink \"blackhole\" \"b\" { inputs = [\"t\"] }\n",
        "p.hcl:4:3: error: `buffer` is a sink option",
    );
}

#[test]
fn every_shipped_config_validates() {
    let registry = common::registry();
    let mut checked = 0;
    for dir in ["configs", "configs/examples"] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "hcl") {
                if let Err(error) = sonde_core::config::load_file(&path, &registry) {
                    panic!("{} does not validate:\n{error}", path.display());
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "no configs found");
}

impl sonde_core::registry::SinkType for MetricsOnlySinkConfig {
    const NAME: &'static str = "metrics_only";
}
