//! A user's first hour, through the real binary: mistakes in the command
//! line and the config give one clear, located error each; startup says
//! where output goes; the documentation commands are complete.

mod common;

use common::free_port;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::sonde;

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn validate(path: &Path) -> Output {
    sonde().args(["validate", "--config"]).arg(path).output().unwrap()
}

const DEMO: &str =
    "source \"demo\" \"gen\" {\n  count = 3\n}\nsink \"blackhole\" \"void\" {\n  inputs = [\"gen\"]\n}\n";

/// `--log-level verbose` used to turn every log off, errors included
/// (tracing read the word as a target name), and the command went on.
#[test]
fn a_misspelt_log_level_is_refused_with_the_valid_levels() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "p.hcl", DEMO);
    for (word, hint) in [("verbose", "debug"), ("warning", "warn"), ("inf", "info")] {
        let output = sonde()
            .args(["--log-level", word, "validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{word}: {stdout}{stderr}");
        assert!(
            stderr.contains(&format!("unknown log level `{word}`"))
                && stderr.contains(&format!("did you mean `{hint}`?")),
            "{stderr}"
        );
        assert!(stderr.contains("off, error, warn, info, debug, trace"), "{stderr}");
        assert!(stdout.is_empty(), "the command must not run: {stdout}");
    }
    for good in ["warn", "info,sonde_core=debug", "ERROR"] {
        let output = sonde()
            .args(["--log-level", good, "validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(output.status.success(), "{good}: {:?}", text(&output));
    }
}

/// A BOM (Windows editors write one) is not part of the text; a byte that
/// is not UTF-8 is an error at its line and column, not "stream did not
/// contain valid UTF-8" without a place.
#[test]
fn a_bom_is_accepted_and_a_non_utf8_byte_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let bom = write(
        dir.path(),
        "bom.hcl",
        [b"\xef\xbb\xbf".as_slice(), DEMO.as_bytes()].concat(),
    );
    let output = validate(&bom);
    assert!(output.status.success(), "{:?}", text(&output));

    let latin1 = "source \"demo\" \"gen\" {\n  count = 3\n}\n# caf\u{e9}\nsink \"blackhole\" \"void\" {\n  inputs = [\"gen\"]\n}\n"
        .replace('\u{e9}', "\u{1}");
    let mut bytes = latin1.into_bytes();
    let at = bytes.iter().position(|b| *b == 1).unwrap();
    bytes[at] = 0xe9;
    let path = write(dir.path(), "latin1.hcl", bytes);
    let output = validate(&path);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:4:6: error: byte 0xe9 is not UTF-8", path.display())),
        "{stderr}"
    );
}

/// One block that fails to parse is one error: its consumers' inputs and
/// its producers' outputs are not reported again as dangling.
#[test]
fn one_bad_block_gives_only_its_own_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "p.hcl",
        "source \"demo\" \"gen\" {\n  count = 3\n}\n\
         transform \"tag\" \"t\" {\n  inputs = [\"gen\"]\n  ad = { a = \"b\" }\n}\n\
         sink \"blackhole\" \"void\" {\n  inputs = [\"t\"]\n}\n",
    );
    let output = validate(&config);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains(":6:3: error: unknown option `ad`"), "{stderr}");
    assert!(!stderr.contains("names no component"), "{stderr}");
    assert!(!stderr.contains("nothing consumes"), "{stderr}");
}

/// `validate` reads `SONDE_CONFIG` as `run` does; a config without a
/// component is an error, not a pipeline that runs nothing.
#[test]
fn validate_reads_sonde_config_and_refuses_an_empty_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "p.hcl", DEMO);
    let output = sonde().arg("validate").env("SONDE_CONFIG", &config).output().unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    assert!(text(&output).0.contains("ok (2 components)"));

    for (name, body) in [("empty.hcl", ""), ("agent-only.hcl", "agent {\n  api = null\n}\n")] {
        let path = write(dir.path(), name, body);
        let output = validate(&path);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "{}:1:1: error: the pipeline has no components",
                path.display()
            )),
            "{stderr}"
        );
    }
}

/// `env()` gives strings; `tonumber`/`tobool` turn them into numbers and
/// booleans (before, `count = env("COUNT", "5")` could not be written at
/// all), and a string that would do gets a hint at its place.
#[test]
fn numbers_and_booleans_come_from_env_through_tonumber_and_tobool() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let config = write(
        dir.path(),
        "p.hcl",
        format!(
            "agent {{\n  api = null\n}}\nsource \"demo\" \"gen\" {{\n  count = tonumber(env(\"SONDE_TEST_COUNT\", \"5\"))\n  rate  = tonumber(\"1000\")\n}}\n\
             sink \"file\" \"out\" {{\n  inputs = [\"gen\"]\n  path   = \"{}\"\n}}\n",
            out.display()
        ),
    );
    let output = sonde()
        .args(["run", "--config"])
        .arg(&config)
        .env("SONDE_TEST_COUNT", "7")
        .output()
        .unwrap();
    assert!(output.status.success(), "{:?}", text(&output));
    let lines = std::fs::read_to_string(&out).unwrap().lines().count();
    assert_eq!(lines, 7, "count = tonumber(env(…)) with SONDE_TEST_COUNT=7");

    let bad = write(
        dir.path(),
        "bad.hcl",
        "source \"demo\" \"gen\" {\n  count = tonumber(\"seven\")\n}\nsink \"blackhole\" \"void\" {\n  inputs = [\"gen\"]\n}\n",
    );
    let (_, stderr) = text(&validate(&bad));
    assert!(
        stderr.contains("bad.hcl:2:11: error: cannot evaluate `count`"),
        "{stderr}"
    );
    assert!(stderr.contains("`seven` is not a number"), "{stderr}");

    let quoted = write(
        dir.path(),
        "quoted.hcl",
        "source \"demo\" \"gen\" {\n  count = env(\"SONDE_TEST_UNSET_COUNT\", \"5\")\n}\nsink \"blackhole\" \"void\" {\n  inputs = [\"gen\"]\n}\n",
    );
    let (_, stderr) = text(&validate(&quoted));
    assert!(
        stderr.contains("quoted.hcl:2:11: error: invalid value for `count`"),
        "{stderr}"
    );
    assert!(stderr.contains("tonumber(env("), "{stderr}");
}

fn spawn(config: &Path) -> Child {
    sonde()
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stderr until `done` holds for it (or 60 s).
fn stderr_until(child: &mut Child, done: impl Fn(&str) -> bool) -> String {
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(&text) && Instant::now() < deadline {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    text
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Startup says which config runs, where every listener is and which
/// files are written.
#[test]
fn startup_names_the_config_the_listeners_and_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (api, prometheus, otlp) = (free_port(), free_port(), free_port());
    let out = dir.path().join("events.jsonl");
    let config = write(
        dir.path(),
        "p.hcl",
        format!(
            "agent {{\n  api = \"127.0.0.1:{api}\"\n  shutdown_grace = \"1s\"\n}}\nsource \"demo\" \"gen\" {{\n  rate = 10\n}}\n\
             sink \"file\" \"out\" {{\n  inputs = [\"gen\"]\n  path   = \"{}\"\n}}\n\
             sink \"prometheus\" \"prom\" {{\n  inputs = [\"gen\"]\n  listen = \"127.0.0.1:{prometheus}\"\n}}\n\
             sink \"otlp\" \"collector\" {{\n  inputs = [\"gen\"]\n  endpoint = \"http://127.0.0.1:{otlp}\"\n}}\n",
            out.display()
        ),
    );
    let mut child = spawn(&config);
    let stderr = stderr_until(&mut child, |t| t.contains("pipeline running"));
    stop(&mut child);
    assert!(stderr.contains(&format!("config={}", config.display())), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{api}")), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{prometheus}")), "{stderr}");
    assert!(stderr.contains(&format!("to={}", out.display())), "{stderr}");
    assert!(stderr.contains(&format!("to=http://127.0.0.1:{otlp}")), "{stderr}");
}

/// A filter that selects nothing on this node is said once at startup,
/// not left to look like a broken source.
#[test]
fn filters_that_match_nothing_say_so_once() {
    let test = "filters_that_match_nothing_say_so_once";
    if !sonde_ebpf::testing::bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Above the largest pid_max (2^22): no process has it.
    let config = write(
        dir.path(),
        "p.hcl",
        "agent {\n  api = null\n}\n\
         source \"disk_latency\" \"disk\" {\n  devices = [\"nosuchdisk0\"]\n}\n\
         source \"profile\" \"cpu\" {\n  pids = [4194305]\n}\n\
         sink \"blackhole\" \"void\" {\n  inputs = [\"disk\", \"cpu\"]\n}\n",
    );
    let mut child = spawn(&config);
    let stderr = stderr_until(&mut child, |t| t.contains("pipeline running"));
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut child);
    assert_eq!(stderr.matches("nosuchdisk0").count(), 1, "{stderr}");
    assert!(stderr.contains("no such block device"), "{stderr}");
    assert_eq!(stderr.matches("4194305").count(), 1, "{stderr}");
    assert!(stderr.contains("no process has these pids"), "{stderr}");
}

/// `sonde components otlp` shows the options of its `tls { … }` block.
#[test]
fn components_show_the_options_of_nested_blocks() {
    let output = sonde().args(["components", "otlp"]).output().unwrap();
    let (stdout, _) = text(&output);
    assert!(output.status.success());
    for option in ["ca_file", "cert_file", "key_file", "server_name"] {
        assert!(stdout.contains(option), "no `tls.{option}`:\n{stdout}");
    }
}

/// The default pipeline sends no `internal_metrics` to its Prometheus
/// endpoint: those series are on the agent API already, and a Prometheus
/// scraping both would count every `sonde_component_*` series twice.
#[test]
fn the_default_pipeline_exposes_each_series_on_one_endpoint_only() {
    use sonde_core::config::load_str;
    let loaded = load_str("default.hcl", sonde::cli::DEFAULT_CONFIG, &common::registry()).unwrap();
    let components = &loaded.config.components;
    assert!(loaded.config.agent.api.is_some());
    let by_id = |id: &str| components.iter().find(|c| &*c.id == id).unwrap();
    // Every type upstream of a component, through transforms.
    fn upstream_types<'a>(
        component: &'a sonde_core::config::ComponentConfig,
        by_id: &dyn Fn(&str) -> &'a sonde_core::config::ComponentConfig,
        out: &mut Vec<&'static str>,
    ) {
        for input in &component.inputs {
            let up = by_id(&input.id);
            out.push(up.type_name);
            upstream_types(up, by_id, out);
        }
    }
    let mut checked = 0;
    for sink in components.iter().filter(|c| c.type_name == "prometheus") {
        let mut types = Vec::new();
        upstream_types(sink, &by_id, &mut types);
        assert!(
            !types.contains(&"internal_metrics"),
            "{} gets internal_metrics",
            sink.id
        );
        checked += 1;
    }
    assert_eq!(checked, 1, "the default pipeline has one Prometheus sink");
}

/// A component that cannot be built is named at its place in the config,
/// once, with its cause once.
#[test]
fn a_startup_error_names_the_block_once_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    // A file where a directory should be: the sink cannot create it.
    let blocker = write(dir.path(), "blocker", "");
    let missing = blocker.join("events.jsonl");
    let config = write(
        dir.path(),
        "p.hcl",
        format!(
            "agent {{\n  api = null\n}}\nsource \"demo\" \"gen\" {{\n  count = 3\n}}\n\
             sink \"file\" \"out\" {{\n  inputs = [\"gen\"]\n  path   = \"{}\"\n}}\n",
            missing.display()
        ),
    );
    let output = sonde().args(["run", "--config"]).arg(&config).output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "{}:7:13: sink \"file\" \"out\": cannot open {} for writing: ",
        config.display(),
        missing.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(stderr.matches("cannot open").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
}

/// Off Kubernetes, with no node name given, events carry the host name as
/// `host.name`, and no `k8s.node.name` (from the sources nor from
/// `pod_enrich`); a given name (`NODE_NAME`) or a Kubernetes pod
/// (`KUBERNETES_SERVICE_HOST`) keeps `k8s.node.name`.
#[test]
fn k8s_node_name_only_on_kubernetes_or_when_given() {
    let dir = tempfile::tempdir().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    let run = |name: &str, env: &[(&str, &str)]| -> Vec<serde_json::Value> {
        let out = dir.path().join(format!("{name}.jsonl"));
        let config = write(
            dir.path(),
            &format!("{name}.hcl"),
            format!(
                "agent {{\n  api = null\n}}\nsource \"demo\" \"gen\" {{\n  count = 2\n}}\n\
                 transform \"pod_enrich\" \"k8s\" {{\n  inputs = [\"gen\"]\n  kubernetes = \"disabled\"\n}}\n\
                 sink \"file\" \"out\" {{\n  inputs = [\"k8s\"]\n  path   = \"{}\"\n}}\n",
                out.display()
            ),
        );
        let mut command = sonde();
        command
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("NODE_NAME")
            .env_remove("KUBERNETES_SERVICE_HOST");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{name}: {:?}", text(&output));
        let events: Vec<serde_json::Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2, "{name}");
        events
    };
    for event in run("host", &[]) {
        assert_eq!(event["attributes"]["host.name"], host, "{event}");
        assert!(event["attributes"].get("k8s.node.name").is_none(), "{event}");
    }
    for event in run("given", &[("NODE_NAME", "node-7")]) {
        assert_eq!(event["attributes"]["k8s.node.name"], "node-7", "{event}");
    }
    for event in run("pod", &[("KUBERNETES_SERVICE_HOST", "10.96.0.1")]) {
        assert_eq!(event["attributes"]["k8s.node.name"], host, "{event}");
    }
}
