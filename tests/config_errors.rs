//! Golden tests of config diagnostics: each kind of mistake gives its
//! message with file:line:col and, where it applies, a suggestion.

mod common;

use sonde_core::config::{load_str, DiagnosticKind, Severity};
use sonde_core::ComponentKind;

/// Loads `text` as `p.hcl` and returns every diagnostic rendered.
fn diagnostics(text: &str) -> Vec<String> {
    match load_str("p.hcl", text, &common::registry()) {
        Ok(loaded) => loaded.warnings.iter().map(ToString::to_string).collect(),
        Err(error) => error.diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// Exactly one diagnostic of `expected`'s severity (`error` or
/// `warning`), and it is `expected`. Others may come with it (a misspelt
/// input also leaves its source unconsumed: a warning besides the error).
fn assert_one(text: &str, expected: &str) {
    let severity = |d: &str| if d.contains(": error: ") { "error" } else { "warning" };
    let found = diagnostics(text);
    let same: Vec<&String> = found.iter().filter(|d| severity(d) == severity(expected)).collect();
    assert!(
        same == [expected],
        "expected exactly one {}:\n{expected}\nfound:\n{}",
        severity(expected),
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
        "p.hcl:2:10: error: invalid value for `rate` in source \"demo\": invalid type: string \"fast\", expected f64",
    );
}

#[test]
fn wrong_enum_value_suggests() {
    assert_one(
        "source \"demo\" \"a\" {\n  kind = \"logs\"\n}\nsink \"blackhole\" \"b\" { inputs = [\"a\"] }\n",
        "p.hcl:2:10: error: invalid value `logs` for `kind` in source \"demo\"\n  help: did you mean `log`?",
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
    // Counted apart from the loop that validates: every file was checked,
    // and there are files (the default and about one example per component).
    let on_disk = ["configs", "configs/examples"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap())
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|e| e == "hcl"))
        .count();
    assert_eq!(checked, on_disk);
    assert!(on_disk > 20, "{on_disk} configs found");
}

impl sonde_core::registry::SinkType for MetricsOnlySinkConfig {
    const NAME: &'static str = "metrics_only";
}

/// Runs `sonde validate` and `sonde run` on `text` (written to `p.hcl` in
/// a temporary folder, the working directory): for each, its exit code and
/// stderr. A config error stops `run` before anything loads, so no root is
/// needed.
fn both_commands(text: &str) -> Vec<(&'static str, Option<i32>, String)> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.hcl"), text).unwrap();
    ["validate", "run"]
        .into_iter()
        .map(|command| {
            let out = common::sonde()
                .current_dir(dir.path())
                .args([command, "--config", "p.hcl"])
                .output()
                .unwrap();
            (
                command,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

/// Both commands fail with exit code 1 and print `expected`, and no line twice.
fn assert_refused(text: &str, expected: &str) {
    for (command, code, stderr) in both_commands(text) {
        assert_eq!(code, Some(1), "sonde {command} on\n{text}\nstderr:\n{stderr}");
        assert!(
            stderr.lines().any(|l| l == expected),
            "sonde {command}: expected\n{expected}\nstderr:\n{stderr}"
        );
        let mut seen = std::collections::HashSet::new();
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            assert!(seen.insert(line), "sonde {command} printed twice: {line}\n{stderr}");
        }
    }
}

/// The options of `ty` whose schema has `format`.
fn options_with_format(ty: &sonde_core::registry::ComponentType, format: &str) -> Vec<String> {
    let schema = ty.schema(&mut schemars::SchemaGenerator::default());
    let properties = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .cloned()
        .unwrap_or_default();
    properties
        .into_iter()
        .filter(|(_, p)| {
            let p = p.get("anyOf").and_then(|a| a.get(0)).unwrap_or(p);
            p.get("format").and_then(|f| f.as_str()) == Some(format)
        })
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn zero_durations_are_refused_before_start_on_every_source() {
    let registry = common::registry();
    let mut checked = Vec::new();
    for ty in registry.iter().filter(|t| t.kind == ComponentKind::Source) {
        for option in options_with_format(ty, "duration") {
            let text = format!(
                "source \"{}\" \"s\" {{\n  {option} = \"0s\"\n}}\nsink \"blackhole\" \"b\" {{ inputs = [\"s\"] }}\n",
                ty.name
            );
            let expected = format!(
                "p.hcl:2:{}: error: invalid value for `{option}` in source \"{}\": must be longer than 0s",
                option.len() + 6,
                ty.name
            );
            assert_refused(&text, &expected);
            checked.push(format!("{}.{option}", ty.name));
        }
    }
    for must in [
        "disk_latency.interval",
        "tcp.interval",
        "energy.interval",
        "internal_metrics.interval",
        "profile.interval",
        "net_flows.interval",
        "net_flows.active_timeout",
        "net_flows.idle_timeout",
    ] {
        assert!(checked.iter().any(|c| c == must), "{must} not checked: {checked:?}");
    }
}

#[test]
fn non_http_endpoints_are_refused_before_start_on_every_sink() {
    let registry = common::registry();
    let mut checked = Vec::new();
    for ty in registry.iter().filter(|t| t.kind == ComponentKind::Sink) {
        for option in options_with_format(ty, "uri") {
            let text = format!(
                "source \"demo\" \"s\" {{}}\nsink \"{}\" \"o\" {{\n  inputs = [\"s\"]\n  {option} = \"ftp://x\"\n}}\n",
                ty.name
            );
            let expected = format!(
                "p.hcl:4:{}: error: invalid value for `{option}` in sink \"{}\": the scheme is `ftp`; it must be `http` or `https`",
                option.len() + 6,
                ty.name
            );
            assert_refused(&text, &expected);
            checked.push(format!("{}.{option}", ty.name));
        }
    }
    for must in ["otlp.endpoint", "pyroscope.endpoint", "prometheus.endpoint"] {
        assert!(checked.iter().any(|c| c == must), "{must} not checked: {checked:?}");
    }
}

#[test]
fn ranges_are_refused_before_start() {
    assert_refused(
        "source \"demo\" \"s\" {}\ntransform \"sample\" \"t\" {\n  inputs = [\"s\"]\n  rate = 1.5\n}\nsink \"blackhole\" \"b\" { inputs = [\"t\"] }\n",
        "p.hcl:4:10: error: invalid value for `rate` in transform \"sample\": must be between 0 and 1, not 1.5",
    );
    assert_refused(
        "source \"tcp\" \"s\" {\n  max_series = 0\n  max_sockets = 0\n}\nsink \"blackhole\" \"b\" { inputs = [\"s\"] }\n",
        "p.hcl:2:16: error: invalid value for `max_series` in source \"tcp\": must be at least 1",
    );
    assert_refused(
        "source \"tcp\" \"s\" {\n  max_series = 0\n  max_sockets = 0\n}\nsink \"blackhole\" \"b\" { inputs = [\"s\"] }\n",
        "p.hcl:3:17: error: invalid value for `max_sockets` in source \"tcp\": must be at least 1",
    );
    assert_refused(
        "source \"profile\" \"s\" {\n  interval = \"50ms\"\n}\nsink \"blackhole\" \"b\" { inputs = [\"s\"] }\n",
        "p.hcl:2:14: error: invalid value for `interval` in source \"profile\": must be at least 100ms (a shorter \
         period only burns CPU), not 50ms",
    );
    assert_refused(
        "source \"net_flows\" \"s\" {\n  max_udp_flows = 0\n}\nsink \"blackhole\" \"b\" { inputs = [\"s\"] }\n",
        "p.hcl:2:19: error: invalid value for `max_udp_flows` in source \"net_flows\": must be at least 1",
    );
    assert_refused(
        "source \"demo\" \"s\" {\n  batch_size = 0\n}\nsink \"blackhole\" \"b\" { inputs = [\"s\"] }\n",
        "p.hcl:2:16: error: invalid value for `batch_size` in source \"demo\": must be at least 1",
    );
}

#[test]
fn contradicting_options_are_refused_before_start() {
    assert_refused(
        "source \"demo\" \"s\" {}\nsink \"otlp\" \"o\" {\n  inputs = [\"s\"]\n  tls { ca_file = \"/x\" }\n}\n",
        "p.hcl:4:3: error: invalid value for `tls` in sink \"otlp\": needs an https:// endpoint",
    );
    assert_refused(
        "source \"demo\" \"s\" {}\nsink \"prometheus\" \"p\" {\n  inputs = [\"s\"]\n  mode = \"remote_write\"\n}\n",
        "p.hcl:4:10: error: invalid value for `mode` in sink \"prometheus\": mode = \"remote_write\" needs `endpoint` (such as \"http://prometheus:9090/api/v1/write\")",
    );
}

#[test]
fn nested_options_are_suggested_from_the_schema() {
    assert_one(
        "source \"demo\" \"s\" {}\nsink \"otlp\" \"o\" {\n  inputs = [\"s\"]\n  tls { ca_fil = \"/x\" }\n}\n",
        "p.hcl:4:9: error: unknown option `tls.ca_fil` in sink \"otlp\"\n  help: did you mean `ca_file`?",
    );
    assert_one(
        "source \"demo\" \"s\" {}\nsink \"otlp\" \"o\" {\n  inputs = [\"s\"]\n  protocol = \"http\"\n}\n",
        "p.hcl:4:14: error: invalid value `http` for `protocol` in sink \"otlp\"\n  help: did you mean `http/protobuf`?",
    );
}
