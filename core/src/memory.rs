//! Giving freed heap memory back to the kernel.
//!
//! glibc's allocator keeps what a program frees for its next allocations,
//! and returns only a free tail of each heap to the kernel. The agent's
//! large allocations are transient and early: each eBPF object load parses
//! the kernel's BTF (some 20 MiB), the profiler parses kallsyms once. Left
//! to glibc, those pages stay in the agent's resident set for its whole
//! life (about 20 MiB of a 60 MiB agent on the default pipeline), so the
//! agent trims its heaps after (re)loading components and then once a
//! minute.

// The one libc call below; the rest of the crate stays safe.
#![allow(unsafe_code)]

use std::time::Duration;

/// How often the running agent trims its heaps: a trim walks the free
/// lists of every heap (well under a millisecond for the agent's).
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Returns the free pages of every heap to the kernel (glibc's
/// `malloc_trim`); a no-op with other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only takes the allocator's own locks and touches
    // no memory a caller owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident anonymous memory of this process, in KiB.
    fn rss_anon_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Set in the child process that measures alone.
    const ALONE: &str = "SONDE_MEMORY_TEST_ALONE";

    /// Resident memory is the process' as a whole, and the other tests of
    /// this binary allocate and free in parallel threads: the measurement
    /// runs in a child process of its own (this test binary, running only
    /// this test), so nothing else moves its resident set.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_small_allocations_leave_the_resident_set() {
        if std::env::var_os(ALONE).is_none() {
            let name = "memory::tests::freed_small_allocations_leave_the_resident_set";
            let output = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1", "--nocapture"])
                .env(ALONE, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        // Many small blocks (below the mmap threshold: they come from the
        // heap), the last one kept so the heap's tail is not free.
        let blocks: Vec<Vec<u8>> = (0..40_000).map(|i| vec![i as u8; 1000]).collect();
        let keep = vec![1u8; 1000];
        let touched = rss_anon_kib();
        drop(blocks);
        release_free_memory();
        let trimmed = rss_anon_kib();
        assert!(
            touched.saturating_sub(trimmed) >= 20_000,
            "RssAnon {touched} KiB with the blocks, {trimmed} KiB after freeing and trimming"
        );
        assert_eq!(keep[0], 1);
    }
}
