// A Rust workload for the profile source's stack walker (tests/bpf_unwind.rs),
// built `rustc -O -C force-frame-pointers=no`: sorting with a comparator
// that burns CPU, called from a function that is not inlined.
// Usage: sonde-unwind-rs SECONDS; prints `cpu_ns=N`.
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn sonde_rs_compare(a: &u64, b: &u64) -> std::cmp::Ordering {
    let mut x = 0u64;
    for i in 0..2000u64 {
        x = black_box(x.wrapping_add(a ^ i).wrapping_mul(b | 1));
    }
    black_box(x);
    a.cmp(b)
}

#[inline(never)]
fn sonde_rs_work(seconds: f64) {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut seed = 88172645463325252u64;
    while Instant::now() < end {
        let mut v: Vec<u64> = (0..2048)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            })
            .collect();
        v.sort_by(sonde_rs_compare);
        black_box(&v);
    }
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    sonde_rs_work(seconds);
    let mut ts = std::mem::MaybeUninit::<[i64; 2]>::uninit();
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut [i64; 2]) -> i32;
    }
    // SAFETY: clock_gettime fills the timespec (two i64 on x86-64 Linux).
    let ts = unsafe {
        clock_gettime(2, ts.as_mut_ptr());
        ts.assume_init()
    };
    println!("cpu_ns={}", ts[0] * 1_000_000_000 + ts[1]);
}
