//! `sonde top` in a real terminal (tmux): the running components with
//! live numbers, the keys, and, with an eBPF source, its programs' run
//! rates while top runs, and none after.

use std::process::Command;
use std::time::Duration;

use crate::common::wait_for;
use crate::Agent;

fn tmux(args: &[&str]) -> String {
    let output = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (cargo xtask setup)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The number after `label`'s row in the components table: the SENT column
/// of component `id` (the 6th field of its row).
fn sent_of(screen: &str, id: &str) -> Option<u64> {
    screen.lines().find_map(|line| {
        let fields: Vec<&str> = line.trim_matches(|c| c == '│' || c == ' ').split_whitespace().collect();
        (fields.first() == Some(&id))
            .then(|| fields.get(5)?.parse().ok())
            .flatten()
    })
}

/// The rows of the eBPF programs table on screen, split into fields
/// (PROGRAM, COMPONENT, TYPE, RUNS/s, …).
fn program_rows(screen: &str) -> Vec<Vec<String>> {
    let table = screen
        .split_once("PROGRAM")
        .map(|(_, rest)| rest.split_once('└').map_or(rest, |(t, _)| t))
        .unwrap_or("");
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.trim_matches(|c| c == '│' || c == ' ')
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<String>>()
        })
        .filter(|fields| !fields.is_empty())
        .collect()
}

/// Runs/s of the eBPF programs on screen (the fourth field of each row of
/// the programs table).
fn program_rates(screen: &str) -> Vec<f64> {
    program_rows(screen)
        .iter()
        .filter_map(|fields| {
            let rate = fields.get(3)?.as_str();
            let (number, scale) = match rate.strip_suffix('k') {
                Some(n) => (n, 1e3),
                None => rate.strip_suffix('M').map_or((rate, 1.0), |n| (n, 1e6)),
            };
            Some(number.parse::<f64>().ok()? * scale)
        })
        .collect()
}

/// Run counts of the agent's programs (kernel statistics).
fn run_counts(pid: u32) -> Vec<u64> {
    let mut ids = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        ids.extend(
            text.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse::<u32>().ok()),
        );
    }
    aya::programs::loaded_programs()
        .flatten()
        .filter(|p| ids.contains(&p.id()))
        .map(|p| p.run_count())
        .collect()
}

#[test]
fn top_shows_live_numbers_in_a_terminal() {
    let bpf = sonde_ebpf::testing::bpf_available_or_skip("top_shows_live_numbers_in_a_terminal (eBPF part)");
    let sched = if bpf {
        "source \"runqueue\" \"sched\" {\n  interval = \"1s\"\n}\n"
    } else {
        ""
    };
    let inputs = if bpf { r#"["gen", "sched"]"# } else { r#"["gen"]"# };
    let agent = Agent::start(&format!(
        r#"
agent {{ api = "127.0.0.1:{{api}}" }}
source "demo" "gen" {{
  rate = 100
}}
{sched}
sink "blackhole" "out" {{
  inputs = {inputs}
}}
"#
    ));
    let session = format!("sonde-top-{}", agent.api);
    let command = format!(
        "{} top --api {} --interval 0.5",
        env!("CARGO_BIN_EXE_sonde"),
        agent.address()
    );
    let started = Command::new("tmux")
        .args(["new-session", "-d", "-x", "160", "-y", "50", "-s", &session, &command])
        .status()
        .expect("tmux is installed (cargo xtask setup)");
    assert!(started.success());
    let capture = || tmux(&["capture-pane", "-p", "-t", &session]);
    wait_for("top to show gen's numbers", Duration::from_secs(15), || {
        sent_of(&capture(), "gen").is_some()
    });
    let first = capture();
    assert!(first.contains("sonde top"), "{first}");
    for id in ["gen", "out"] {
        assert!(first.lines().any(|l| l.contains(id)), "no {id}:\n{first}");
    }
    let before = sent_of(&first, "gen").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let second = capture();
    let after = sent_of(&second, "gen").unwrap_or_else(|| panic!("{second}"));
    assert!(
        after > before,
        "gen's count did not move: {before} then {after}\n{second}"
    );
    // 100 events a second: the OUT/s column says about that.
    let rate_line = second.lines().find(|l| l.contains("gen")).unwrap().to_string();
    assert!(
        rate_line
            .split_whitespace()
            .any(|f| f.parse::<f64>().is_ok_and(|r| (60.0..=140.0).contains(&r))),
        "no rate near 100/s: {rate_line}"
    );

    if bpf {
        wait_for("the runqueue programs' runs a second", Duration::from_secs(15), || {
            program_rates(&capture()).iter().any(|r| *r > 0.0)
        });
        // Each program is named with the component that loaded it: the
        // agent's only eBPF source.
        let rows = program_rows(&capture());
        assert!(!rows.is_empty());
        for fields in &rows {
            assert_eq!(fields.get(1).map(String::as_str), Some("sched"), "{fields:?}");
        }
    }

    // Keys: sort, filter.
    tmux(&["send-keys", "-t", &session, "s"]);
    wait_for("the sort to change", Duration::from_secs(5), || {
        capture().contains("sorted by out/s")
    });
    tmux(&["send-keys", "-t", &session, "/", "o", "u", "t", "Enter"]);
    wait_for("the filter to apply", Duration::from_secs(5), || {
        let screen = capture();
        screen.contains("filter: out") && sent_of(&screen, "gen").is_none() && sent_of(&screen, "out").is_some()
    });
    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for("top to quit", Duration::from_secs(5), || {
        !Command::new("tmux")
            .args(["has-session", "-t", &session])
            .status()
            .unwrap()
            .success()
    });

    if bpf {
        // Statistics went back off with top (unless something else on this
        // machine holds them on: then this cannot be told).
        let pid = agent.stats()["pid"].as_u64().unwrap() as u32;
        let held_elsewhere =
            std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() != "0");
        if !held_elsewhere {
            let a = run_counts(pid);
            std::thread::sleep(Duration::from_secs(1));
            let b = run_counts(pid);
            assert!(!a.is_empty());
            assert_eq!(a, b, "program statistics still counting after top quit");
        }
    }
}
