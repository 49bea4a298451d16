//! Real-kernel tests of the loader and the feature trials (root needed).

use sonde_ebpf::disk_latency::{DiskLatency, Options};
use sonde_ebpf::probe::{self, Feature};
use sonde_ebpf::testing::bpf_available_or_skip;

#[test]
fn disk_latency_loads_attaches_and_counts() {
    if !bpf_available_or_skip("disk_latency_loads_attaches_and_counts") {
        return;
    }
    let programs = DiskLatency::load(Options::default()).expect("disk_latency loads");
    // Some block I/O: write and fsync a file on the root file system.
    let dir = std::env::temp_dir().join(format!("sonde-ebpf-load-{}", std::process::id()));
    std::fs::write(&dir, vec![7u8; 1 << 20]).unwrap();
    std::fs::File::open(&dir).unwrap().sync_all().unwrap();
    std::fs::remove_file(&dir).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let hists = programs.read().expect("maps read");
    let stats = programs.stats().expect("stats read");
    eprintln!("{} keys, stats {stats:?}", hists.len());
    for (key, hist) in &hists {
        eprintln!(
            "{}:{} {} requests={} timed={} queued={} bytes={}",
            key.major(),
            key.minor(),
            key.operation(),
            hist.requests,
            hist.timed(),
            hist.queued(),
            hist.bytes
        );
    }
    assert!(hists.iter().any(|(_, h)| h.requests > 0), "some block request was seen");
    assert_eq!(stats.read_failed, 0);
}

#[test]
fn feature_trials_report_each_feature() {
    if !bpf_available_or_skip("feature_trials_report_each_feature") {
        return;
    }
    for feature in Feature::ALL {
        let result = probe::trial(feature);
        eprintln!(
            "{feature}: {:?}",
            result.as_ref().map_err(|e| (e.to_string(), e.errno()))
        );
    }
    assert!(probe::trial(Feature::Tracepoint).is_ok());
    assert!(probe::trial(Feature::PerfEvent).is_ok());
    assert!(probe::trial(Feature::RingBuf).is_ok());
}

#[test]
fn energy_loads_attaches_and_accounts_this_process() {
    if !bpf_available_or_skip("energy_loads_attaches_and_accounts_this_process") {
        return;
    }
    let programs = sonde_ebpf::energy::Energy::load().expect("energy loads");
    // 200 ms of CPU (not wall: the machine may be shared) in a thread
    // started after attach, whose whole task clock is accounted (a thread
    // older than the attach loses the slice it was in), then make every
    // CPU switch so the slices are in.
    std::thread::spawn(|| {
        let thread_cpu_ns = || {
            let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: clock_gettime writes one timespec into `ts`.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
        };
        while thread_cpu_ns() < 200_000_000 {
            std::hint::black_box(0u64);
        }
    })
    .join()
    .unwrap();
    programs.flush();
    let tasks = programs.read().expect("map reads");
    let stats = programs.stats().expect("stats read");
    eprintln!("{} processes, stats {stats:?}", tasks.len());
    let me = std::process::id();
    let ours: u64 = tasks.iter().filter(|t| t.key.tgid == me).map(|t| t.on_cpu_ns).sum();
    assert!(ours >= 190_000_000, "this process ran 200 ms, accounted {ours} ns");
    // (Idle time is accounted as tgid 0, but a loaded machine may not idle.)
    assert_eq!(stats.map_full, 0);
}
