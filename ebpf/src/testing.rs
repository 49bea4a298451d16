//! Helpers for tests that need to load BPF for real.
//!
//! With `SONDE_REQUIRE_BPF=1` (CI) a test that cannot load BPF fails;
//! without it, it prints why and skips.

/// The environment variable that turns skips into failures.
pub const REQUIRE_BPF: &str = "SONDE_REQUIRE_BPF";

/// Whether `SONDE_REQUIRE_BPF` is set to something other than `0` or empty.
pub fn bpf_required() -> bool {
    std::env::var(REQUIRE_BPF).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether this process can load and attach BPF programs (tried for real
/// with a tracepoint program). Returns `false` after printing the reason
/// when the test should skip; panics with the reason when
/// `SONDE_REQUIRE_BPF=1`.
pub fn bpf_available_or_skip(test: &str) -> bool {
    match crate::probe::trial(crate::probe::Feature::Tracepoint) {
        Ok(()) => true,
        Err(error) => skip_or_fail(test, &format!("cannot load BPF: {error}")),
    }
}

/// Skips (returns `false`) or, with `SONDE_REQUIRE_BPF=1`, panics, naming `reason`.
pub fn skip_or_fail(test: &str, reason: &str) -> bool {
    if bpf_required() {
        panic!("{test}: {reason} ({REQUIRE_BPF} is set, so this fails instead of skipping)");
    }
    eprintln!("SKIP {test}: {reason} (set {REQUIRE_BPF}=1 to make this a failure)");
    false
}
