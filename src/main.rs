//! The `sonde` command: run, check and explain eBPF telemetry pipelines.

use std::process::ExitCode;

use clap::Parser;
use sonde::cli;

fn main() -> ExitCode {
    bound_malloc();
    let cli = cli::Cli::parse();
    if let Err(error) = cli::init_logging(&cli.log_level) {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps glibc from holding on to freed memory. Its mmap threshold
/// otherwise rises to the largest block freed (up to 32 MiB), after which
/// such blocks come from the heap and stay there once freed: the profile
/// source's reads of whole binaries at start, and the buffers of a burst of
/// events. Measured with every source on (issue 23): 113 MiB of anonymous
/// memory idle and 256 MiB VmHWM after a 15 s connection storm, against
/// 31 and 208 MiB with fixed thresholds. Called before any thread starts.
fn bound_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no thread runs yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}
