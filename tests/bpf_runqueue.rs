//! `source "runqueue"` against the real kernel (needs root): four busy
//! processes share one CPU for 5 s; each one's run-queue wait summed by
//! the source must agree with the kernel's schedstat (`/proc/PID/schedstat`
//! field 2) within 5 %, and its context switches with `/proc/PID/status`
//! within 2 % — once with the `tp_btf` programs, once with the `raw_tp`
//! ones the loader falls back to.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use std::time::Duration;

use sonde_ebpf::testing::run_check;
use sonde_sources::runqueue::bpf::attach::NO_TP_BTF_ENV;
use sonde_sources::runqueue::conformance::spinners_agree;

/// The kernel matrix's check, on this kernel (1 s).
/// One test at a time in this binary: they switch the tp_btf / raw_tp
/// choice through the environment, and their spinners share CPUs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn runqueue_conformance() {
    let _serial = serial();
    run_check("runqueue_conformance", sonde_sources::runqueue::conformance::check);
}

/// The test: four spinners on one CPU for 5 s, tp_btf programs
/// with each thread's wait in task storage (5.11+; the kernel matrix's
/// 5.10 runs the tp_btf programs of the hash object).
#[test]
fn spinners_agree_with_schedstat_tp_btf() {
    let _serial = serial();
    std::env::remove_var(NO_TP_BTF_ENV);
    run_check("spinners_agree_with_schedstat_tp_btf", || {
        let evidence = spinners_agree(Duration::from_secs(5))?;
        assert!(
            evidence.contains("(tp_btf, task storage)"),
            "tp_btf programs with task storage expected on this kernel: {evidence}"
        );
        Ok(evidence)
    });
}

/// The same with the raw_tp programs of the hash object (kernels whose
/// BTF lacks the tracepoints).
#[test]
fn spinners_agree_with_schedstat_raw_tp() {
    let _serial = serial();
    std::env::set_var(NO_TP_BTF_ENV, "1");
    run_check("spinners_agree_with_schedstat_raw_tp", || {
        let result = spinners_agree(Duration::from_secs(5));
        std::env::remove_var(NO_TP_BTF_ENV);
        let evidence = result?;
        assert!(evidence.contains("(raw_tp)"), "raw_tp programs were forced: {evidence}");
        Ok(evidence)
    });
}
