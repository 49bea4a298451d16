//! `source "process"` against the real kernel (needs root).
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! tests; without it they print why and pass.

use sonde_ebpf::testing::run_check;

/// The kernel matrix's check, on this kernel.
#[test]
fn execs_and_exits_pair_and_forks_agree_with_proc_stat() {
    run_check(
        "execs_and_exits_pair_and_forks_agree_with_proc_stat",
        sonde_sources::process::conformance::check,
    );
}
