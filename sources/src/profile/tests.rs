//! Unit tests of parsing, filtering and grouping; the kernel side is
//! tested for real in `tests/bpf_profile.rs`.

use std::collections::HashMap;

use super::bpf::{Drained, ProfileKey, StackRef};

use super::collect::{group_by_process, lookup_addresses};
use super::filter::{glob, Targets};
use super::perf_map::PerfMap;
use super::procs::{self, cgroup_v2_path, ns_pid, parse_maps, stat_start_time, FileKey, MappingKind, Process};
use super::*;

const MAPS: &str = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1311 /usr/bin/hot
55d0c0a01000-55d0c0a02000 r-xp 00001000 fd:01 1311 /usr/bin/hot
7f10c0000000-7f10c0021000 rw-p 00000000 00:00 0
7f10c1028000-7f10c11bd000 r-xp 00028000 fd:01 2222 /usr/lib/x86_64-linux-gnu/libc.so.6
7f10c2000000-7f10c2010000 rwxp 00000000 00:00 0
7f10c3000000-7f10c3001000 r-xp 00000000 00:05 3333 /tmp/my lib (deleted)
7ffd5e3f2000-7ffd5e3f4000 r-xp 00000000 00:00 0                          [vdso]
";

#[test]
fn maps_keep_executable_mappings() {
    let maps = parse_maps(MAPS);
    assert_eq!(maps.len(), 5, "{maps:#?}");
    assert_eq!(maps[0].path.as_str(), "/usr/bin/hot");
    assert_eq!(
        maps[0].kind,
        MappingKind::File(FileKey {
            dev: 0xfd << 32 | 1,
            inode: 1311
        })
    );
    assert_eq!(maps[0].file_offset(0x55d0c0a01010), 0x1010);
    assert_eq!(maps[2].kind, MappingKind::Anon, "JIT memory");
    assert_eq!(maps[3].path.as_str(), "/tmp/my lib", "spaces kept, (deleted) dropped");
    assert_eq!(maps[4].kind, MappingKind::Vdso);
    let mut process = Process::gone(1, "hot");
    process.mappings = maps;
    assert_eq!(
        process.mapping(0x7f10c1028000).unwrap().path.as_str(),
        "/usr/lib/x86_64-linux-gnu/libc.so.6"
    );
    assert!(process.mapping(0x7f10c11bd000).is_none(), "end is exclusive");
    assert!(process.mapping(0x1000).is_none());
}

#[test]
fn proc_fields_parse() {
    let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 123456 1000 200";
    assert_eq!(stat_start_time(stat), Some(123456));
    assert_eq!(ns_pid("Name:\tx\nNSpid:\t4242\t7\n"), Some(7));
    assert_eq!(
        cgroup_v2_path("0::/system.slice/ssh.service\n").as_deref(),
        Some("/system.slice/ssh.service")
    );
    assert_eq!(cgroup_v2_path("1:cpu:/x\n"), None);
}

#[test]
fn perf_maps_resolve_jit_code() {
    let map = PerfMap::parse("7f0000001000 40 LazyCompile:~hot /app.js:1\n0x7f0000002000 0x10 Interpreter\nbad line\n");
    assert_eq!(map.len(), 2);
    assert_eq!(
        map.lookup(0x7f0000001020).map(|s| s.as_str()),
        Some("LazyCompile:~hot /app.js:1")
    );
    assert_eq!(map.lookup(0x7f0000001040), None, "end is exclusive");
    assert_eq!(map.lookup(0x7f000000200f).map(|s| s.as_str()), Some("Interpreter"));
}

#[test]
fn globs_and_filters_select_processes() {
    assert!(glob("postgres*", "postgres: wal"));
    assert!(glob("*gres", "postgres"));
    assert!(glob("p?stgres", "postgres"));
    assert!(!glob("postgres", "postgres2"));
    assert!(glob("*", ""));
    assert!(glob("a*b*c", "axxbyyc") && !glob("a*b*c", "axxbyy"));

    let mut process = Process::gone(10, "nginx");
    process.cgroup = Some("/kubepods.slice/pod1/ctr".into());
    assert!(Targets::default().matches(&process));
    let by_cgroup = Targets {
        cgroups: vec!["/kubepods.slice".into()],
        ..Targets::default()
    };
    assert!(by_cgroup.matches(&process));
    let other = Targets {
        cgroups: vec!["/kubepods".into()],
        ..Targets::default()
    };
    assert!(!other.matches(&process), "a path prefix is not a parent cgroup");
    let both = Targets {
        pids: vec![10],
        comms: vec!["ng*".into()],
        ..Targets::default()
    };
    assert!(both.matches(&process));
    let wrong_pid = Targets {
        pids: vec![11],
        ..Targets::default()
    };
    assert!(!wrong_pid.matches(&process));
}

fn key(pid: u32, tid: u32, user: i32, kernel: i32, comm: &str) -> ProfileKey {
    let mut key = ProfileKey {
        pid,
        tid,
        user_stack_id: user,
        kernel_stack_id: kernel,
        comm: [0; 16],
        user_stack_hash: 0,
        python_stack_id: 0,
        unwind_outcome: 0,
        pad: [0; 7],
    };
    key.comm[..comm.len()].copy_from_slice(comm.as_bytes());
    key
}

#[test]
fn threads_merge_into_their_process() {
    let drained = Drained {
        counts: vec![
            (key(7, 8, 1, -14, "worker"), 3),
            (key(7, 7, 1, -14, "main"), 2),
            (key(7, 7, 2, 3, "main"), 1),
            (key(9, 9, -17, -14, "other"), 4),
        ],
        stacks: HashMap::from([
            (1, vec![0x1000, 0x2000]),
            (2, vec![0x3000]),
            (3, vec![0xffff_ffff_8100_0000]),
        ]),
        python: HashMap::new(),
    };
    let groups = group_by_process(&drained);
    assert_eq!(groups.len(), 2);
    let seven = &groups[&7];
    assert_eq!(seven.comm, "main", "the main thread names the process");
    assert_eq!(seven.stacks[&(StackRef::Id(1), StackRef::Empty, 0)], 5);
    assert_eq!(seven.stacks[&(StackRef::Id(2), StackRef::Id(3), 0)], 1);
    assert_eq!(groups[&9].stacks[&(StackRef::Collision, StackRef::Empty, 0)], 4);
    let addresses: Vec<u64> = lookup_addresses(&drained, StackRef::Id(1)).collect();
    assert_eq!(addresses, [0x1000, 0x1fff], "return addresses step back into the call");
    assert_eq!(lookup_addresses(&drained, StackRef::Empty).count(), 0);
}

#[test]
fn config_defaults_validate_and_reject_unknown_options() {
    let config: ProfileSourceConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.frequency_hz, DEFAULT_FREQUENCY_HZ);
    assert_eq!(config.interval, DEFAULT_INTERVAL);
    assert_eq!(config.event, ProfileEvent::CpuClock);
    assert!(!config.include_idle);
    sonde_core::SourceConfig::validate(&config).unwrap();
    let config: ProfileSourceConfig =
        serde_json::from_str(r#"{"frequency_hz": 49, "interval": "5s", "comms": ["nginx*"], "event": "auto"}"#)
            .unwrap();
    assert_eq!(config.options().frequency_hz, 49);
    assert_eq!(config.targets().comms, ["nginx*"]);
    let zero: ProfileSourceConfig = serde_json::from_str(r#"{"frequency_hz": 0}"#).unwrap();
    assert_eq!(
        sonde_core::SourceConfig::validate(&zero).unwrap_err()[0].option,
        "frequency_hz"
    );
    assert!(serde_json::from_str::<ProfileSourceConfig>(r#"{"frequency": 99}"#).is_err());
}

#[inline(never)]
fn symbolize_me() -> u64 {
    std::hint::black_box(42)
}

#[test]
fn own_functions_symbolize_through_the_caches() {
    use std::path::Path;

    let procfs = Path::new("/proc");
    let pid = std::process::id();
    let process = procs::read_process(procfs, pid, true).expect("/proc/self");
    assert!(process.alive && !process.mappings.is_empty());
    let address = symbolize_me as *const () as u64 + 1;
    let mut symbols = Symbols::new(procfs, false);
    symbols.open_files(&process);
    assert!(symbols.open_file_count() > 0);
    symbols.prefetch_user(&process, [address]);
    let frame = symbols.user_frame(&process, address).expect("resolved");
    assert!(frame.function.ends_with("symbolize_me"), "{frame:?}");
    assert_eq!(frame.kind, sonde_core::event::FrameKind::Native);
    // Cached: resolves again after the file's entry was used, with no new lookup.
    assert_eq!(symbols.user_frame(&process, address).unwrap(), frame);
    // An address in no mapping of a process that was never read.
    let gone = Process::gone(1, "x");
    let (unknown, reason) = symbols.user_frame(&gone, 0x1234).unwrap_err();
    assert_eq!(reason, symbolize::Unresolved::ProcessExited);
    assert_eq!(unknown.function.as_str(), "0x1234");
    symbols.prefetch_kernel([0]);
    assert_eq!(symbols.kernel_frame(0).kind, sonde_core::event::FrameKind::Unknown);
}
