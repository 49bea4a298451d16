//! `source "memory"` against the real kernel (needs root): page allocations
//! checked against `/proc/vmstat`, and a C program that leaks 1000 × 4 KiB
//! from a known function (and frees another 1000) checked for its
//! outstanding bytes by stack.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use sonde_core::event::{Event, MetricValue};
use sonde_ebpf::testing::{bpf_available_or_skip, run_check, skip_or_fail};
use sonde_sources::memory::{Collector, MemorySourceConfig, ALLOCATIONS, FREES, OUTSTANDING_BYTES, STACK};

/// The kernel matrix's check, on this kernel: pages allocated node-wide
/// agree with `/proc/vmstat` `pgalloc_*` within 5 %.
#[test]
fn page_allocations_agree_with_vmstat() {
    run_check(
        "page_allocations_agree_with_vmstat",
        sonde_sources::memory::conformance::check,
    );
}

const LEAKER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static void *kept[1000];
__attribute__((noinline)) void leak_pages_here(int i) { kept[i] = malloc(4096); ((volatile char *)kept[i])[0] = 1; }
__attribute__((noinline)) void churn_here(void) { void *p = malloc(4096); ((volatile char *)p)[0] = 1; free(p); }
static long long ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
int main(void) {
    char c;
    printf("ready\n"); fflush(stdout);
    if (read(0, &c, 1) != 1) return 1;
    for (int i = 0; i < 1000; i++) leak_pages_here(i);
    for (int i = 0; i < 1000; i++) churn_here();
    printf("done\n"); fflush(stdout);
    if (read(0, &c, 1) != 1) return 1;
    long long start = ns();
    for (int i = 0; i < 20000; i++) { void *p = malloc(64); ((volatile char *)p)[0] = 1; free(p); }
    printf("%lld\n", (ns() - start) / 20000); fflush(stdout);
    read(0, &c, 1);
    return 0;
}
"#;

struct Leaker {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Leaker {
    /// Starts the program and waits until it is ready (its stdio buffers
    /// allocated).
    fn start(binary: &std::path::Path) -> Leaker {
        let mut child = Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut leaker = Leaker { child, out };
        assert_eq!(leaker.line(), "ready");
        leaker
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// Lets it run its next phase; the line it prints at the end.
    fn step(&mut self) -> String {
        self.child.stdin.as_mut().unwrap().write_all(b"g").unwrap();
        self.line()
    }
}

impl Drop for Leaker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric_sum(events: &[Event], name: &str, filter: impl Fn(&sonde_core::event::Attributes) -> bool) -> f64 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m) if m.name.as_str() == name && filter(&m.attributes) => match m.value {
                MetricValue::Counter { value } | MetricValue::Gauge { value } => Some(value),
                _ => None,
            },
            _ => None,
        })
        .sum()
}

/// 1000 × 4 KiB leaked from `leak_pages_here`, 1000 × 4 KiB allocated and
/// freed by `churn_here`: the outstanding bytes of the stacks through
/// `leak_pages_here` are 4,096,000 (± one page), none through `churn_here`.
/// Also prints the cost of the uprobes per malloc/free pair.
#[test]
fn outstanding_bytes_name_the_leaking_function() {
    let test = "outstanding_bytes_name_the_leaking_function";
    if !bpf_available_or_skip(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (source, binary) = (dir.path().join("leaker.c"), dir.path().join("leaker"));
    std::fs::write(&source, LEAKER).unwrap();
    let built = Command::new("gcc")
        .args(["-O0", "-fno-omit-frame-pointer", "-o"])
        .arg(&binary)
        .arg(&source)
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        skip_or_fail(test, "gcc cannot build the test program");
        return;
    }
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
    let mut untraced = Leaker::start(&binary);
    let mut leaker = Leaker::start(&binary);
    let config = MemorySourceConfig {
        pids: vec![leaker.child.id()],
        ..MemorySourceConfig::default()
    };
    let mut collector = Collector::load(&config, "test-node".into(), &[]).expect("memory loads");
    assert_eq!(leaker.step(), "done");
    let events = collector.collect().unwrap();
    let stacks: Vec<(String, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Metric(m) if m.name.as_str() == OUTSTANDING_BYTES => match m.value {
                MetricValue::Gauge { value } => Some((m.attributes.get(STACK)?.as_str()?.to_string(), value)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    for (stack, bytes) in &stacks {
        eprintln!("{bytes:>10} B  {stack}");
    }
    let leaked: f64 = stacks
        .iter()
        .filter(|(s, _)| s.contains("leak_pages_here"))
        .map(|(_, b)| b)
        .sum();
    let churned: f64 = stacks
        .iter()
        .filter(|(s, _)| s.contains("churn_here"))
        .map(|(_, b)| b)
        .sum();
    assert!(
        (leaked - 4_096_000.0).abs() <= 4096.0,
        "leaked {leaked} B through leak_pages_here"
    );
    assert_eq!(churned, 0.0, "churn_here freed everything");
    let allocs = metric_sum(&events, ALLOCATIONS, |_| true);
    let frees = metric_sum(&events, FREES, |_| true);
    assert!(
        allocs >= 2000.0 && frees >= 1000.0,
        "allocations {allocs}, frees {frees}"
    );
    // The added cost per malloc/free pair: the same loop traced and not.
    assert_eq!(untraced.step(), "done");
    let (plain, traced) = (
        untraced.step().parse::<f64>().unwrap(),
        leaker.step().parse::<f64>().unwrap(),
    );
    for stats in collector.programs().program_stats() {
        if stats.run_count > 0 {
            eprintln!(
                "bpf_stats {}: {} runs, {:.0} ns/run",
                stats.name,
                stats.run_count,
                stats.run_time_ns as f64 / stats.run_count as f64
            );
        }
    }
    eprintln!(
        "malloc+free pair: {plain} ns untraced, {traced} ns traced: {} ns added by the uprobes",
        traced - plain
    );
}
