//! The graph page in headless Chromium: the components of the running
//! config drawn, with a count that moves between two loads, and the
//! picture itself.

use std::process::Command;

use crate::Agent;

/// Chromium's binary (Debian's package is `chromium`).
fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("no chromium: install it (cargo xtask setup installs the test packages)");
}

/// Loads `url`, lets its scripts run, and returns the DOM or writes a
/// screenshot.
pub fn chromium_load(url: &str, screenshot: Option<&std::path::Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = Command::new(chromium());
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        // Enough (virtual) time for the page's first poll to come back.
        .arg("--virtual-time-budget=4000")
        .arg("--window-size=1100,700");
    match screenshot {
        Some(path) => command.arg(format!("--screenshot={}", path.display())),
        None => command.arg("--dump-dom"),
    };
    let output = command.arg(url).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `data-sent` of node `id` in the dumped DOM.
fn sent_of(dom: &str, id: &str) -> Option<u64> {
    let at = dom.find(&format!("data-id=\"{id}\""))?;
    let rest = &dom[at..];
    let value = rest.split("data-sent=\"").nth(1)?.split('"').next()?;
    value.parse().ok()
}

#[test]
fn the_graph_page_draws_the_running_pipeline() {
    let agent = Agent::start(
        r#"
agent { api = "127.0.0.1:{api}" }
source "demo" "gen" {
  rate = 200
  kind = "log"
}
source "internal_metrics" "self" {
  interval = "1s"
}
transform "tag" "stamp" {
  inputs = ["gen"]
  add    = { environment = "test" }
}
sink "blackhole" "out" {
  inputs = ["stamp", "self"]
}
"#,
    );
    let url = format!("http://127.0.0.1:{}/", agent.api);
    let first = chromium_load(&url, None);
    for id in ["gen", "self", "stamp", "out"] {
        assert!(
            first.contains(&format!("data-id=\"{id}\"")),
            "node {id} not drawn:\n{first}"
        );
    }
    // An edge per input, named by its ends.
    for (from, to) in [("gen", "stamp"), ("stamp", "out"), ("self", "out")] {
        assert!(
            first.contains(&format!("data-from=\"{from}\" data-to=\"{to}\"")),
            "no edge {from} -> {to}:\n{first}"
        );
    }
    assert!(first.contains("source \"demo\""), "{first}");
    let before = sent_of(&first, "gen").unwrap_or_else(|| panic!("no count for gen:\n{first}"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let second = chromium_load(&url, None);
    let after = sent_of(&second, "gen").unwrap();
    assert!(
        after > before,
        "gen's count did not move between loads: {before} then {after}"
    );

    let png = agent.path("page.png");
    chromium_load(&url, Some(&png));
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 5000,
        "no picture: {} bytes",
        bytes.len()
    );
}

/// A profile source's node links to its newest flame graph, which the
/// agent draws from the last profile it sent.
#[test]
fn a_profile_source_has_its_flame_graph_one_click_away() {
    if !sonde_ebpf::testing::bpf_available_or_skip("a_profile_source_has_its_flame_graph_one_click_away") {
        return;
    }
    let agent = Agent::start(
        r#"
agent { api = "127.0.0.1:{api}" }
source "profile" "cpu" {
  frequency_hz = 499
  interval     = "1s"
}
sink "blackhole" "out" {
  inputs = ["cpu"]
}
"#,
    );
    let dom = chromium_load(&format!("http://127.0.0.1:{}/", agent.api), None);
    assert!(dom.contains("href=\"/flamegraph/cpu\""), "no flame graph link:\n{dom}");
    // Something to sample, while the source's first intervals pass.
    let busy = std::thread::spawn(|| {
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_secs(4) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        x
    });
    let mut svg = String::new();
    crate::common::wait_for("the first flame graph", std::time::Duration::from_secs(20), || {
        svg = crate::get(&agent.address(), "/flamegraph/cpu", None);
        svg.starts_with("HTTP/1.1 200")
    });
    let _ = busy.join();
    assert!(svg.contains("image/svg+xml"), "{svg}");
    assert!(svg.contains("<svg") || svg.contains("<?xml"), "{svg}");
    let missing = crate::get(&agent.address(), "/flamegraph/out", None);
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}
