//! The profile source's stack walker (`.eh_frame` tables in BPF) against
//! the real kernel (needs root): programs built without frame pointers
//! (tests/workload/unwind.c, unwind_rs.rs, unwind_cc.cc) and Debian's own
//! `xz` are sampled, and their stacks must run from the sampled function
//! to `_start`, with the functions between them in call order, for at
//! least 95 % of the samples; the walker's own verdict
//! (`sonde_profile_stacks_total{outcome}`) must say `complete` as often.
//!
//! Each workload first runs a little while its tables load (its first
//! samples are walked by frame pointers), then one interval is drained
//! and thrown away, and the next, which covers the rest of its run, is
//! checked.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF (or lacks
//! gcc, g++, rustc, xz) fails the tests; without it they print why and pass.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::profile::turn;
use sonde_core::event::{keys, Event, Frame, FrameKind, Profile};
use sonde_ebpf::testing::{bpf_available_or_skip, skip_or_fail};
use sonde_sources::profile::bpf::NewPids;
use sonde_sources::profile::{Collector, ProfileSourceConfig, Symbols};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The workloads, built once per test binary.
struct Built {
    c: PathBuf,
    rust: PathBuf,
    cc: PathBuf,
}

fn built(test: &str) -> Option<&'static Built> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("sonde-unwind-{}", std::process::id()));
        std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
        let workload = Path::new(ROOT).join("tests/workload");
        let run = |mut cmd: Command| -> Result<(), String> {
            let output = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd:?} failed: {}", String::from_utf8_lossy(&output.stderr)))
            }
        };
        let built = Built {
            c: out.join("sonde-unwind"),
            rust: out.join("sonde-unwind-rs"),
            cc: out.join("sonde-unwind-cc"),
        };
        let mut gcc = Command::new("gcc");
        gcc.args(["-O2", "-g", "-fomit-frame-pointer", "-pthread", "-o"])
            .arg(&built.c)
            .arg(workload.join("unwind.c"));
        run(gcc)?;
        let mut rustc = Command::new("rustc");
        rustc
            .args(["-O", "-C", "force-frame-pointers=no", "-o"])
            .arg(&built.rust)
            .arg(workload.join("unwind_rs.rs"));
        run(rustc)?;
        let mut gxx = Command::new("g++");
        gxx.args(["-O2", "-fomit-frame-pointer", "-o"])
            .arg(&built.cc)
            .arg(workload.join("unwind_cc.cc"));
        run(gxx)?;
        Ok(built)
    });
    match built {
        Ok(built) => Some(built),
        Err(reason) => {
            skip_or_fail(test, reason);
            None
        }
    }
}

/// The source, loaded, reporting the workloads only.
struct Harness {
    collector: Collector,
    symbols: Symbols,
    announced: NewPids,
}

fn harness(test: &str) -> Option<Harness> {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: the stack walker is x86-64 only");
        return None;
    }
    let config = ProfileSourceConfig {
        comms: vec!["sonde-unwind*".into(), "xz".into()],
        ..ProfileSourceConfig::default()
    };
    let (mut collector, symbols) = common::profile::collector(test, &config)?;
    assert!(collector.unwinder().is_some(), "native unwinding is on by default");
    let announced = collector.take_new_pids().expect("new pids ring");
    Some(Harness {
        collector,
        symbols,
        announced,
    })
}

/// What one workload run gave: its profile and the walker's verdicts.
struct Sampled {
    profile: Profile,
    outcomes: BTreeMap<String, u64>,
}

impl Sampled {
    fn total(&self) -> u64 {
        self.profile.total_samples()
    }

    /// Samples whose user frames satisfy `check`.
    fn count(&self, check: impl Fn(&[&Frame]) -> bool) -> u64 {
        self.profile
            .samples
            .iter()
            .filter(|s| check(&user_frames(&s.frames)))
            .map(|s| s.count)
            .sum()
    }

    fn complete_share(&self) -> f64 {
        let all: u64 = self.outcomes.values().sum();
        self.outcomes.get("complete").copied().unwrap_or(0) as f64 / all.max(1) as f64
    }

    /// Prints the most frequent stacks (for a failing run).
    fn dump(&self) -> String {
        let mut samples: Vec<_> = self.profile.samples.iter().collect();
        samples.sort_by_key(|s| std::cmp::Reverse(s.count));
        samples
            .iter()
            .take(8)
            .map(|s| {
                let names: Vec<String> = s
                    .frames
                    .iter()
                    .map(|f| {
                        let module = f.module.as_deref().unwrap_or("");
                        let module = module.rsplit('/').next().unwrap_or(module);
                        format!("{}@{module}", f.function)
                    })
                    .collect();
                format!("{} × {}", s.count, names.join(" ← "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn user_frames(frames: &[Frame]) -> Vec<&Frame> {
    frames.iter().filter(|f| f.kind != FrameKind::Kernel).collect()
}

/// Whether `frames` (leaf first) hold `names` in this order, not
/// necessarily adjacent.
fn in_order(frames: &[&Frame], names: &[&str]) -> bool {
    let mut want = names.iter().peekable();
    for frame in frames {
        if want.peek().is_some_and(|n| is(frame, n)) {
            want.next();
        }
    }
    want.peek().is_none()
}

/// Whether `frame` is function `name` (C++ names carry their parameters).
fn is(frame: &Frame, name: &str) -> bool {
    let f = frame.function.as_str();
    f == name || f.strip_prefix(name).is_some_and(|rest| rest.starts_with('('))
}

fn ends_at_start(frames: &[&Frame]) -> bool {
    frames.last().is_some_and(|f| f.function.as_str() == "_start")
}

/// Runs `cmd` (which prints `cpu_ns=N` at the end, or not: `xz`), lets
/// its tables load for `warm`, drops that interval, and returns the rest
/// of its run as sampled, merged over the processes named `comm`.
fn sample(h: &mut Harness, mut cmd: Command, comm: &str, warm: Duration) -> Sampled {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start the workload");
    let started = Instant::now();
    while started.elapsed() < warm {
        h.collector.note_new_pids(&h.announced.read(), &mut h.symbols);
        std::thread::sleep(Duration::from_millis(20));
    }
    h.collector.note_new_pids(&h.announced.read(), &mut h.symbols);
    h.collector.unwinder().unwrap().flush();
    h.collector.collect(&mut h.symbols).unwrap();
    let before = h.collector.completeness().totals().clone();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "workload did not finish");
        h.collector.note_new_pids(&h.announced.read(), &mut h.symbols);
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).ok();
    let events = h.collector.collect(&mut h.symbols).unwrap();
    let after = h.collector.completeness().totals().clone();
    let outcomes = after
        .iter()
        .map(|(k, v)| (k.to_string(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    let mut merged: Option<Profile> = None;
    for event in &events {
        let Event::Profile(p) = event else { continue };
        if p.attributes.get(keys::COMM).and_then(|v| v.as_str()) != Some(comm) {
            continue;
        }
        match &mut merged {
            Some(m) => m.samples.extend(p.samples.iter().cloned()),
            None => merged = Some((**p).clone()),
        }
    }
    let profile = merged.unwrap_or_else(|| panic!("no profile of {comm} (output {line:?})"));
    let stats = h.collector.unwinder().unwrap().stats();
    eprintln!(
        "{comm}: {} samples, outcomes {outcomes:?}; tables: {stats:?}",
        profile.total_samples()
    );
    eprintln!("program counters: {:?}", h.collector.profiler().stats().unwrap());
    let sampled = Sampled { profile, outcomes };
    eprintln!("{}", sampled.dump());
    sampled
}

fn c_workload(built: &Built, mode: &str, seconds: &str) -> Command {
    let mut cmd = Command::new(&built.c);
    cmd.args([mode, seconds]);
    cmd
}

/// Asserts that at least 95 % of the samples satisfy `check` and that the
/// walker called at least 95 % of them complete.
fn assert_mostly(sampled: &Sampled, what: &str, check: impl Fn(&[&Frame]) -> bool) {
    let total = sampled.total();
    let good = sampled.count(check);
    assert!(total >= 20, "only {total} samples:\n{}", sampled.dump());
    assert!(
        good as f64 >= 0.95 * total as f64,
        "{good} of {total} samples {what}:\n{}",
        sampled.dump()
    );
    assert!(
        sampled.complete_share() >= 0.95,
        "the walker called {:.1} % of the stacks complete: {:?}\n{}",
        100.0 * sampled.complete_share(),
        sampled.outcomes,
        sampled.dump()
    );
}

/// The example: a qsort comparator of a C program built without
/// frame pointers, under libc's qsort (no frame pointers either).
#[test]
fn c_without_frame_pointers_unwinds_through_qsort_to_start() {
    let test = "c_without_frame_pointers_unwinds_through_qsort_to_start";
    let _turn = turn();
    let Some(mut h) = harness(test) else { return };
    let Some(built) = built(test) else { return };
    let sampled = sample(
        &mut h,
        c_workload(built, "qsort", "3"),
        "sonde-unwind",
        Duration::from_millis(500),
    );
    // The comparator's samples: cmp ← (libc's qsort) ← work ← main ← … ← _start.
    let in_cmp = sampled.count(|f| f.first().is_some_and(|f| f.function.as_str() == "sonde_unwind_cmp"));
    let chained = sampled.count(|f| {
        in_order(f, &["sonde_unwind_cmp", "sonde_unwind_work", "main", "_start"])
            && f.iter()
                .skip(1)
                .take_while(|f| f.function.as_str() != "sonde_unwind_work")
                .any(|f| f.module.as_deref().is_some_and(|m| m.contains("libc")))
            && ends_at_start(f)
    });
    eprintln!("{chained} of {in_cmp} comparator samples chained through libc to _start");
    assert!(
        in_cmp as f64 >= 0.5 * sampled.total() as f64,
        "{in_cmp} of {} in the comparator",
        sampled.total()
    );
    assert!(
        chained as f64 >= 0.95 * in_cmp as f64,
        "{chained} of {in_cmp} comparator samples chain to _start:\n{}",
        sampled.dump()
    );
    assert_mostly(&sampled, "end at _start under main", |f| {
        in_order(f, &["main", "_start"]) && ends_at_start(f)
    });
}

/// A thread's stack ends at libc's clone3, whose CFI marks the end.
#[test]
fn a_thread_unwinds_to_its_start() {
    let test = "a_thread_unwinds_to_its_start";
    let _turn = turn();
    let Some(mut h) = harness(test) else { return };
    let Some(built) = built(test) else { return };
    let sampled = sample(
        &mut h,
        c_workload(built, "thread", "2"),
        "sonde-unwind",
        Duration::from_millis(500),
    );
    assert_mostly(&sampled, "run from sonde_unwind_work to thread_main", |f| {
        in_order(f, &["sonde_unwind_work", "thread_main"])
    });
}

/// 200 frames of recursion: deeper than the frames one program run
/// walks, so the walk goes on through tail calls.
#[test]
fn a_200_deep_recursion_unwinds_whole() {
    let test = "a_200_deep_recursion_unwinds_whole";
    let _turn = turn();
    let Some(mut h) = harness(test) else { return };
    let Some(built) = built(test) else { return };
    let sampled = sample(
        &mut h,
        c_workload(built, "deep", "2"),
        "sonde-unwind",
        Duration::from_millis(500),
    );
    assert_mostly(&sampled, "hold 201 recursion frames, main and _start", |f| {
        f.iter().filter(|f| f.function.as_str() == "sonde_unwind_deep").count() == 201
            && in_order(f, &["sonde_unwind_deep", "main", "_start"])
            && ends_at_start(f)
    });
}

/// A signal handler's stack goes through the kernel's signal frame
/// (libc's __restore_rt) into the interrupted function.
#[test]
fn a_signal_handler_unwinds_into_the_interrupted_code() {
    let test = "a_signal_handler_unwinds_into_the_interrupted_code";
    let _turn = turn();
    let Some(mut h) = harness(test) else { return };
    let Some(built) = built(test) else { return };
    let sampled = sample(
        &mut h,
        c_workload(built, "signal", "3"),
        "sonde-unwind",
        Duration::from_millis(500),
    );
    let in_handler = sampled.count(|f| f.iter().any(|f| f.function.as_str() == "sonde_unwind_handler"));
    let through = sampled.count(|f| in_order(f, &["sonde_unwind_handler", "main", "_start"]) && ends_at_start(f));
    eprintln!("{through} of {in_handler} handler samples reach main and _start");
    assert!(
        in_handler >= 10,
        "{in_handler} samples in the handler:\n{}",
        sampled.dump()
    );
    assert!(
        through as f64 >= 0.95 * in_handler as f64,
        "{through} of {in_handler}:\n{}",
        sampled.dump()
    );
    assert_mostly(&sampled, "end at _start", ends_at_start);
}

/// A Rust release binary (no frame pointers): through std's sort and
/// lang_start.
#[test]
fn a_rust_release_binary_unwinds_to_start() {
    let test = "a_rust_release_binary_unwinds_to_start";
    let _turn = turn();
    let Some(mut h) = harness(test) else { return };
    let Some(built) = built(test) else { return };
    let mut cmd = Command::new(&built.rust);
    cmd.arg("3");
    let sampled = sample(&mut h, cmd, "sonde-unwind-rs", Duration::from_millis(500));
    assert_mostly(&sampled, "end at _start", ends_at_start);
    let named = sampled.count(|f| {
        f.iter().any(|f| f.function.contains("sonde_rs_work")) && f.iter().any(|f| f.function.contains("main"))
    });
    assert!(
        named as f64 >= 0.9 * sampled.total() as f64,
        "{named} of {} under sonde_rs_work and main:\n{}",
        sampled.total(),
        sampled.dump()
    );
}

/// C++ exceptions: the samples are in libstdc++ and libgcc_s's unwinder.
#[test]
fn a_cpp_program_that_throws_unwinds_to_start() {
    let test = "a_cpp_program_that_throws_unwinds_to_start";
    let _turn = turn();
    let Some(mut h) = harness(test) else { return };
    let Some(built) = built(test) else { return };
    let mut cmd = Command::new(&built.cc);
    cmd.arg("3");
    let sampled = sample(&mut h, cmd, "sonde-unwind-cc", Duration::from_millis(500));
    assert_mostly(&sampled, "run from sonde_cc_work to _start", |f| {
        in_order(f, &["sonde_cc_work", "main", "_start"]) && ends_at_start(f)
    });
}

/// Debian's own xz, stripped and built without frame pointers: its stacks
/// end at its entry (unnamed in a stripped binary: the walker's verdict).
#[test]
fn debian_xz_stacks_are_complete() {
    let test = "debian_xz_stacks_are_complete";
    let _turn = turn();
    let Some(mut h) = harness(test) else { return };
    if !Path::new("/usr/bin/xz").exists() {
        skip_or_fail(test, "no /usr/bin/xz (apt-get install xz-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("random");
    let mut data = vec![0u8; 6 << 20];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&input, &data).unwrap();
    // exec: the shell's pid becomes xz's.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec /usr/bin/xz -9 -T1 -c < {} > /dev/null", input.display()));
    let sampled = sample(&mut h, cmd, "xz", Duration::from_millis(700));
    let total = sampled.total();
    assert!(total >= 20, "only {total} samples");
    assert!(
        sampled.complete_share() >= 0.95,
        "the walker called {:.1} % of xz's stacks complete: {:?}\n{}",
        100.0 * sampled.complete_share(),
        sampled.outcomes,
        sampled.dump()
    );
}

/// framehop's view of process `pid`: its executable mappings with the
/// bytes framehop needs; and where its signal trampolines are (the rows
/// of sonde's own tables for them), past which framehop does not unwind.
fn framehop_modules(pid: u32) -> (framehop::x86_64::UnwinderX86_64<Vec<u8>>, Vec<std::ops::Range<u64>>) {
    use framehop::{ExplicitModuleSectionInfo, Module, Unwinder};
    use object::{Object, ObjectSection, ObjectSegment};

    let mut unwinder = framehop::x86_64::UnwinderX86_64::new();
    let mut trampolines = Vec::new();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || !fields[1].contains('x') {
            continue;
        }
        let (start, end) = fields[0].split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        let offset = u64::from_str_radix(fields[2], 16).unwrap();
        let data = if fields[5] == "[vdso]" {
            own_vdso()
        } else if fields[5].starts_with('/') {
            std::fs::read(format!("/proc/{pid}/map_files/{start:x}-{end:x}")).unwrap_or_default()
        } else {
            continue;
        };
        let Ok(file) = object::File::parse(&*data) else {
            continue;
        };
        // ELF address of the mapping's first byte: from its code segment.
        let Some(segment) = file.segments().find(|s| {
            let (o, size) = s.file_range();
            o & !4095 <= offset && offset < o + size && s.address() != 0 || (o == 0 && offset == 0)
        }) else {
            continue;
        };
        let (seg_offset, _) = segment.file_range();
        let base_avma = start.wrapping_sub(segment.address().wrapping_add(offset).wrapping_sub(seg_offset));
        if let Ok(table) = sonde_sources::profile::unwind::compile::compile(&data) {
            for pair in table.rows.windows(2) {
                if u32::from(pair[0].kind) == sonde_sources::profile::bpf::UNWIND_ROW_SIGNAL {
                    trampolines.push(base_avma + u64::from(pair[0].pc)..base_avma + u64::from(pair[1].pc));
                }
            }
        }
        let section = |name: &str| {
            file.section_by_name(name).map(|s| {
                (
                    s.address()..s.address() + s.size(),
                    s.uncompressed_data().map(|d| d.to_vec()).ok(),
                )
            })
        };
        let text = section(".text");
        let eh_frame = section(".eh_frame");
        let eh_frame_hdr = section(".eh_frame_hdr");
        let info = ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: text.as_ref().map(|t| t.0.clone()),
            text: text.and_then(|t| t.1),
            got_svma: section(".got").map(|g| g.0),
            eh_frame_svma: eh_frame.as_ref().map(|e| e.0.clone()),
            eh_frame: eh_frame.and_then(|e| e.1),
            eh_frame_hdr_svma: eh_frame_hdr.as_ref().map(|e| e.0.clone()),
            eh_frame_hdr: eh_frame_hdr.and_then(|e| e.1),
            debug_frame: section(".debug_frame").and_then(|d| d.1),
            ..Default::default()
        };
        unwinder.add_module(Module::new(fields[5].to_string(), start..end, base_avma, info));
    }
    (unwinder, trampolines)
}

/// This process' vDSO image (the kernel maps the same one everywhere).
fn own_vdso() -> Vec<u8> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps.lines().find(|l| l.ends_with("[vdso]")).unwrap();
    let (start, end) = line.split_whitespace().next().unwrap().split_once('-').unwrap();
    let (start, end) = (
        usize::from_str_radix(start, 16).unwrap(),
        usize::from_str_radix(end, 16).unwrap(),
    );
    // SAFETY: the vDSO stays mapped readable for the process' life.
    unsafe { std::slice::from_raw_parts(start as *const u8, end - start) }.to_vec()
}

/// The oracle: for some samples the program also sends the sampled
/// registers and the top 16 KiB of the stack; framehop (an independent
/// unwinder, samply's) unwinds them again, and its frames must be the BPF
/// walk's, as far as the captured bytes let it go, and up to a signal
/// trampoline (framehop does not read the kernel's signal frame: past it,
/// it skips the interrupted frame, which the BPF walk keeps).
#[test]
fn bpf_walks_agree_with_framehop() {
    use framehop::Unwinder;
    use sonde_sources::profile::bpf::{UnwindOracle, UNWIND_OUTCOME_COMPLETE};

    let test = "bpf_walks_agree_with_framehop";
    let _turn = turn();
    if !cfg!(target_arch = "x86_64") || !bpf_available_or_skip(test) {
        return;
    }
    let Some(built) = built(test) else { return };
    let config = ProfileSourceConfig {
        comms: vec!["sonde-unwind*".into()],
        ..ProfileSourceConfig::default()
    };
    let mut collector =
        Collector::load_with(&config, "test-node".into(), &[], |o| o.oracle_every = 1).expect("profile loads");
    let mut symbols = collector.symbols();
    let mut announced = collector.take_new_pids().unwrap();
    let mut oracle = collector
        .profiler_mut()
        .take_oracle()
        .expect("the oracle's ring buffer");
    let (mut records, mut compared, mut agreed, mut frames_compared) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for (mode, seconds) in [("qsort", "4"), ("deep", "3"), ("signal", "3")] {
        let mut child = c_workload(built, mode, seconds).stdout(Stdio::null()).spawn().unwrap();
        let pid = child.id();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) {
            collector.note_new_pids(&announced.read(), &mut symbols);
            std::thread::sleep(Duration::from_millis(20));
        }
        collector.unwinder().unwrap().flush();
        let (unwinder, trampolines) = framehop_modules(pid);
        let mut cache = framehop::x86_64::CacheX86_64::<_>::new();
        while oracle.next().is_some() {}
        while child.try_wait().unwrap().is_none() {
            collector.note_new_pids(&announced.read(), &mut symbols);
            while let Some(item) = oracle.next() {
                let Some(record) = UnwindOracle::parse(&item) else {
                    continue;
                };
                if record.pid != pid {
                    continue;
                }
                records += 1;
                if record.outcome != UNWIND_OUTCOME_COMPLETE || record.stack_len == 0 {
                    continue;
                }
                let stack = record.stack_bytes().to_vec();
                let sp = record.sp;
                let mut read = |addr: u64| -> Result<u64, ()> {
                    let at = addr.checked_sub(sp).ok_or(())? as usize;
                    let bytes = stack.get(at..at + 8).ok_or(())?;
                    Ok(u64::from_le_bytes(bytes.try_into().unwrap()))
                };
                let regs = framehop::x86_64::UnwindRegsX86_64::new(record.pc, record.sp, record.bp);
                let mut frames = unwinder.iter_frames(record.pc, regs, &mut cache, &mut read);
                let mut theirs = Vec::new();
                while let Ok(Some(frame)) = frames.next() {
                    theirs.push(frame.address());
                }
                let ours = record.walked();
                // framehop stops where the captured bytes end.
                let mut n = theirs.len().min(ours.len());
                if let Some(at) = ours
                    .iter()
                    .position(|a| trampolines.iter().any(|t| t.contains(&(a - 1))))
                {
                    n = n.min(at + 1);
                }
                if n < 2 {
                    continue;
                }
                compared += 1;
                frames_compared += n;
                if ours[..n] == theirs[..n] {
                    agreed += 1;
                } else if disagreements.len() < 5 {
                    disagreements.push(format!("{mode}: ours {:x?}\n theirs {:x?}", &ours[..n], &theirs[..n]));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        collector.collect(&mut symbols).unwrap();
    }
    eprintln!(
        "oracle: {records} records, {compared} compared ({frames_compared} frames), {agreed} agree; {disagreements:#?}"
    );
    assert!(compared >= 20, "only {compared} samples compared of {records}");
    assert!(
        agreed as f64 >= 0.95 * compared as f64,
        "{agreed} of {compared} BPF walks agree with framehop:\n{}",
        disagreements.join("\n")
    );
}
