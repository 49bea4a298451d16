//! Unit tests of the meters and the attribution; the kernel side and the
//! whole source are tested for real in `tests/bpf_energy.rs`.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::bpf::{EnergyKey, TaskTime};

use super::meter::Meters;
use super::model::{CpuTimes, ModelMeter, PowerModel};
use super::rapl::{component, wrapping_delta, Rapl};
use super::*;

/// One powercap zone as the kernel lays it out: a directory in the device
/// tree, linked from `class/powercap`.
fn zone(root: &Path, path: &str, name: &str, energy_uj: u64, max_uj: u64) {
    let dir = root.join("devices/virtual/powercap/intel-rapl").join(path);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("name"), format!("{name}\n")).unwrap();
    std::fs::write(dir.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    std::fs::write(dir.join("max_energy_range_uj"), format!("{max_uj}\n")).unwrap();
    std::fs::write(dir.join("enabled"), "1\n").unwrap();
    let id = Path::new(path).file_name().unwrap();
    symlink(&dir, root.join("class/powercap").join(id)).unwrap();
}

fn set_energy(root: &Path, path: &str, energy_uj: u64) {
    let file = root
        .join("devices/virtual/powercap/intel-rapl")
        .join(path)
        .join("energy_uj");
    std::fs::write(file, format!("{energy_uj}\n")).unwrap();
}

const MAX_UJ: u64 = 262_143_328_850;

/// Two sockets: package, core, dram each, plus psys; and the control type
/// directory and an mmio zone that must not be counted.
fn powercap_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("class/powercap")).unwrap();
    std::fs::create_dir_all(r.join("devices/virtual/powercap/intel-rapl")).unwrap();
    symlink(
        r.join("devices/virtual/powercap/intel-rapl"),
        r.join("class/powercap/intel-rapl"),
    )
    .unwrap();
    zone(r, "intel-rapl:0", "package-0", MAX_UJ - 1_000_000, MAX_UJ);
    zone(r, "intel-rapl:0/intel-rapl:0:0", "core", 5_000_000, MAX_UJ);
    zone(r, "intel-rapl:0/intel-rapl:0:1", "dram", 7_000_000, 65_712_999_613);
    zone(r, "intel-rapl:1", "package-1", 10_000_000, MAX_UJ);
    zone(r, "intel-rapl:1/intel-rapl:1:0", "core", 1_000_000, MAX_UJ);
    zone(r, "intel-rapl:1/intel-rapl:1:1", "dram", 2_000_000, 65_712_999_613);
    zone(r, "intel-rapl:2", "psys", 100, MAX_UJ);
    // The mmio interface repeats package-0 on client CPUs: skipped.
    let mmio = r.join("devices/virtual/powercap/intel-rapl-mmio/intel-rapl-mmio:0");
    std::fs::create_dir_all(&mmio).unwrap();
    std::fs::write(mmio.join("name"), "package-0\n").unwrap();
    symlink(&mmio, r.join("class/powercap/intel-rapl-mmio:0")).unwrap();
    root
}

#[test]
fn rapl_reads_a_kernel_powercap_tree_across_a_wraparound() {
    let root = powercap_tree();
    let r = root.path();
    let mut rapl = Rapl::discover(r).unwrap().expect("zones found");
    assert_eq!(rapl.zones().len(), 7, "{:?}", rapl.zones());
    assert_eq!(rapl.components(), ["core", "dram", "package", "psys"]);

    // package-0 wraps: 1 J to the top, then 2 J after 0.
    set_energy(r, "intel-rapl:0", 2_000_000);
    set_energy(r, "intel-rapl:1", 14_000_000);
    set_energy(r, "intel-rapl:0/intel-rapl:0:0", 6_500_000);
    set_energy(r, "intel-rapl:1/intel-rapl:1:0", 2_000_000);
    set_energy(r, "intel-rapl:0/intel-rapl:0:1", 7_250_000);
    set_energy(r, "intel-rapl:1/intel-rapl:1:1", 2_250_000);
    set_energy(r, "intel-rapl:2", 20_000_100);
    let joules: std::collections::BTreeMap<String, f64> = rapl.read().unwrap().into_iter().collect();
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(joules["package"], 3.0 + 4.0), "{joules:?}");
    assert!(close(joules["core"], 1.5 + 1.0), "{joules:?}");
    assert!(close(joules["dram"], 0.25 + 0.25), "{joules:?}");
    assert!(close(joules["psys"], 20.0), "{joules:?}");

    // Nothing moved: nothing counted.
    let joules = rapl.read().unwrap();
    assert!(joules.iter().all(|(_, j)| *j == 0.0), "{joules:?}");
}

#[test]
fn wraparound_and_names() {
    assert_eq!(wrapping_delta(10, 25, 100), 15);
    assert_eq!(wrapping_delta(90, 5, 100), 15);
    assert_eq!(component("package-0"), "package");
    assert_eq!(component("package-12"), "package");
    assert_eq!(component("dram"), "dram");
    assert_eq!(component("psys"), "psys");
}

#[test]
fn no_powercap_means_no_rapl() {
    let root = tempfile::tempdir().unwrap();
    assert!(Rapl::discover(root.path()).unwrap().is_none());
    std::fs::create_dir_all(root.path().join("class/powercap")).unwrap();
    assert!(Rapl::discover(root.path()).unwrap().is_none());
}

#[test]
fn meters_use_rapl_when_present() {
    let root = powercap_tree();
    let model = PowerModel::new(1.0, 2.0).unwrap();
    let mut meters = Meters::open(root.path(), Path::new("/proc"), model, false).unwrap();
    assert!(meters.components().iter().all(|(_, s)| *s == PowerSource::Rapl));
    set_energy(root.path(), "intel-rapl:2", 10_000_100);
    let energy = meters.read(2.0).unwrap();
    let psys = energy.iter().find(|e| e.component.as_str() == "psys").unwrap();
    assert_eq!(psys.joules, 10.0);
    // The first interval is its own floor: all of it could be idle.
    assert_eq!(psys.idle_joules, 10.0);
    set_energy(root.path(), "intel-rapl:2", 40_000_100);
    let energy = meters.read(2.0).unwrap();
    let psys = energy.iter().find(|e| e.component.as_str() == "psys").unwrap();
    assert_eq!((psys.joules, psys.idle_joules), (30.0, 10.0), "floor 5 W × 2 s");
}

/// The real /sys and /proc: RAPL where the host has a readable zone (found
/// here by listing /sys/class/powercap, not by `Rapl::discover`), the model
/// otherwise, with its idle energy exact. (The model's figure from the
/// real /proc/stat is checked in tests/bpf_energy.rs, against /proc/stat
/// read around the interval.)
#[test]
fn this_node_reports_what_it_has() {
    let has_rapl = std::fs::read_dir("/sys/class/powercap").is_ok_and(|dir| {
        dir.filter_map(Result::ok).any(|zone| {
            zone.file_name().to_string_lossy().starts_with("intel-rapl:")
                && std::fs::read_to_string(zone.path().join("energy_uj")).is_ok()
        })
    });
    let model = PowerModel::new(0.74, 3.5).unwrap();
    let mut meters = Meters::open(Path::new("/sys"), Path::new("/proc"), model, false).unwrap();
    if has_rapl {
        assert!(
            meters.components().iter().all(|(_, s)| *s == PowerSource::Rapl),
            "this node has RAPL: {:?}",
            meters.components()
        );
        return;
    }
    assert_eq!(
        meters.components(),
        [(MODEL_COMPONENT.into(), PowerSource::Model)],
        "this node has no RAPL"
    );
    let energy = meters.read(0.3).unwrap();
    let cpus = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as f64;
    let cpu = &energy[0];
    assert_eq!(cpu.source, PowerSource::Model);
    assert!(
        (cpu.idle_joules - cpus * 0.74 * 0.3).abs() < 1e-9,
        "idle {} J for {cpus} CPUs",
        cpu.idle_joules
    );
}

#[test]
fn proc_stat_drives_the_model() {
    let stat = |user: u64, idle: u64| {
        format!("cpu  {user} 0 0 {idle} 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\nintr 1\n")
    };
    let times = CpuTimes::parse(&stat(30, 70)).unwrap();
    assert_eq!(
        times,
        CpuTimes {
            busy: 30,
            total: 100,
            cpus: 2
        }
    );
    let proc = tempfile::tempdir().unwrap();
    std::fs::write(proc.path().join("stat"), stat(100, 100)).unwrap();
    let mut meter = ModelMeter::new(proc.path(), PowerModel::new(1.0, 3.0).unwrap()).unwrap();
    // +50 busy, +150 idle ticks: 25 % busy.
    std::fs::write(proc.path().join("stat"), stat(150, 250)).unwrap();
    let (joules, idle, utilisation) = meter.read(10.0).unwrap();
    assert_eq!(utilisation, 0.25);
    assert_eq!(idle, 2.0 * 1.0 * 10.0);
    assert_eq!(joules, 20.0 + 2.0 * 2.0 * 0.25 * 10.0);
    assert!(PowerModel::new(3.0, 1.0).is_err());
    assert!(PowerModel::new(-1.0, 1.0).is_err());
}

fn task(tgid: u32, on_cpu_ns: u64) -> TaskTime {
    TaskTime {
        key: EnergyKey {
            tgid,
            _pad: 0,
            cgroup_id: 1,
        },
        on_cpu_ns,
        comm: format!("p{tgid}"),
    }
}

fn energy(joules: f64, idle_joules: f64) -> ComponentEnergy {
    ComponentEnergy {
        component: "package".into(),
        source: PowerSource::Rapl,
        joules,
        idle_joules,
    }
}

#[test]
fn ledger_shares_by_cpu_time_and_conserves_energy() {
    let mut ledger = Ledger::new(1, &[task(0, 500), task(10, 1_000), task(20, 2_000)]);
    // In the interval: idle 9000 ns, p10 300 ns, p20 100 ns, p30 (new) 600 ns.
    let round = ledger.attribute(
        &[task(0, 9_500), task(10, 1_300), task(20, 2_100), task(30, 600)],
        &[energy(50.0, 20.0)],
    );
    assert_eq!(round.cpu_ns, 1_000);
    assert_eq!(round.idle_ns, 9_000);
    let joules = |tgid: u32| {
        ledger
            .processes()
            .iter()
            .find(|(k, _)| k.tgid == tgid)
            .map(|(_, p)| p.joules[0])
            .unwrap()
    };
    assert!((joules(10) - 15.0).abs() < 1e-9);
    assert!((joules(20) - 5.0).abs() < 1e-9);
    assert!((joules(30) - 30.0).abs() < 1e-9);
    assert_eq!(joules(0), 0.0, "the idle task gets nothing");
    let sum: f64 = ledger.active().map(|(_, p)| p.joules[0]).sum();
    assert!((sum - ledger.node_joules[0]).abs() < 1e-9);
    assert_eq!(ledger.node_idle_joules[0], 20.0);

    // Nobody ran: the energy stays with the node.
    let round = ledger.attribute(
        &[task(0, 19_500), task(10, 1_300), task(20, 2_100), task(30, 600)],
        &[energy(10.0, 10.0)],
    );
    assert_eq!(round.unattributed, [10.0]);
    assert_eq!(ledger.active().count(), 0);
    ledger.forget(&[task(30, 0).key]);
    assert_eq!(ledger.processes().len(), 3);
}

#[test]
fn config_defaults_and_rejects_unknown_options() {
    let config: EnergySourceConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config.interval, DEFAULT_INTERVAL);
    assert_eq!(config.sysfs_root, Path::new("/sys"));
    assert_eq!(config.idle_watts_per_cpu, 0.74);
    assert_eq!(config.max_watts_per_cpu, 3.5);
    assert!(config.gpu);
    let config: EnergySourceConfig =
        serde_json::from_str(r#"{"interval": "2s", "sysfs_root": "/host/sys", "max_watts_per_cpu": 5}"#).unwrap();
    assert_eq!(config.interval.as_secs(), 2);
    assert_eq!(config.max_watts_per_cpu, 5.0);
    assert!(serde_json::from_str::<EnergySourceConfig>(r#"{"sysfs": "/sys"}"#).is_err());
}
