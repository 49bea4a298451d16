//! A component that dies, in an agent run in this process (its own test
//! binary: the agent gives up the process' capabilities, which would break
//! other tests sharing the process).

mod common;

use common::{free_port, http_get, wait_for};
use std::time::Duration;

/// A component that dies is an error everywhere: the log, errors_total,
/// `/health`, and the run's report (the exit status).
#[test]
fn a_dead_component_fails_health_and_the_run() {
    let mut registry = common::registry();
    sonde_core::testing::register(&mut registry);
    let api = free_port();
    let text = format!(
        r#"
agent {{ api = "127.0.0.1:{api}" }}
source "sequence" "dying" {{
  count       = 100
  panic_after = 20
}}
source "sequence" "slow" {{
  count      = 30
  batch_size = 1
}}
sink "record" "dead_sink" {{
  inputs   = ["dying", "slow"]
  delay_ms = 100
}}
"#
    );
    let source = sonde_core::agent::ConfigSource::Embedded {
        name: "dying.hcl",
        text: Box::leak(text.into_boxed_str()),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let run = runtime.spawn(sonde_core::agent::run(source, registry));
    wait_for("/health to report the failure", Duration::from_secs(20), || {
        http_get(api, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 503") && r.contains("\"failed\""))
    });
    let health = http_get(api, "/health").unwrap();
    assert!(health.contains("told to panic after 20 events"), "{health}");
    let report = runtime.block_on(run).unwrap().unwrap();
    assert!(!report.is_clean());
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].component, "source \"sequence\" \"dying\"");
    assert_eq!(
        sonde_core::testing::counter("sonde_component_errors_total", "dying", None),
        1
    );
}
