//! Dropping capabilities in every thread of the process.
//!
//! Linux keeps capabilities per thread, and `capset` only changes the
//! calling thread's, so a process that drops them on one thread still has
//! them in the others (tokio's workers, the blocking pool). glibc solves
//! this for `setuid` by signalling every thread; libcap's "psx" does the
//! same for capabilities. This is that technique, reduced to what sonde
//! needs: a real-time signal sent to each thread (`tgkill`), whose handler
//! does the drop with raw system calls (async-signal-safe), repeated until
//! no thread is left that has not done it. Threads created afterwards
//! inherit the dropped sets from their (already dropped) creator.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{CapabilitySet, PrivilegeError};

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// How long to wait for the threads signalled in one round.
const ROUND_TIMEOUT: Duration = Duration::from_secs(2);
/// Rounds before giving up on threads that keep appearing.
const MAX_ROUNDS: usize = 16;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

// What the signal handler applies. Atomics, because a handler may only
// touch lock-free state.
static KEEP: AtomicU64 = AtomicU64::new(0);
static LAST_CAP: AtomicU32 = AtomicU32::new(0);
static ACKED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
static DROP_BOUNDING: AtomicBool = AtomicBool::new(false);

/// Applies the drop to the calling thread. Only raw system calls and
/// atomics: it runs inside a signal handler.
fn drop_in_this_thread() -> Result<(), (&'static str, i32)> {
    let keep = KEEP.load(Ordering::SeqCst);
    let last = LAST_CAP.load(Ordering::SeqCst);
    // SAFETY: prctl and capset take plain integers and pointers to the
    // local structs below, which outlive the calls; neither allocates or
    // takes locks, so both are safe in a signal handler.
    unsafe {
        // Bounding set first: removing a capability from it needs SETPCAP,
        // which the capset below gives up.
        for cap in 0..=last {
            if DROP_BOUNDING.load(Ordering::SeqCst)
                && keep & (1 << cap) == 0
                && libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) == 1
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0
            {
                return Err(("prctl(PR_CAPBSET_DROP)", errno()));
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", errno()));
        }
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: keep as u32,
                permitted: keep as u32,
                inheritable: 0,
            },
            CapData {
                effective: (keep >> 32) as u32,
                permitted: (keep >> 32) as u32,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) != 0 {
            return Err(("capset", errno()));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(("prctl(PR_SET_NO_NEW_PRIVS)", errno()));
        }
    }
    Ok(())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

extern "C" fn on_signal(_: libc::c_int) {
    // errno belongs to the interrupted code: keep it as it was.
    // SAFETY: __errno_location returns this thread's errno slot.
    let saved = unsafe { *libc::__errno_location() };
    if drop_in_this_thread().is_err() {
        FAILED.fetch_add(1, Ordering::SeqCst);
    }
    ACKED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// The signal used: a real-time one (queued, never merged), above those
/// glibc reserves for itself.
fn signal_number() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

fn install_handler() -> Result<(), PrivilegeError> {
    static INSTALLED: OnceLock<i32> = OnceLock::new();
    let errno = *INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
        // handler is an `extern "C" fn(c_int)` as sa_sigaction expects
        // without SA_SIGINFO. The handler stays installed for good, so a
        // signal still in flight can never meet the default action (which
        // would end the process).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal_number(), &action, std::ptr::null_mut()) != 0 {
                return errno();
            }
        }
        0
    });
    if errno != 0 {
        return Err(PrivilegeError::Syscall {
            call: "sigaction",
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    Ok(())
}

/// The ids of this process's threads.
pub fn list() -> Result<Vec<u32>, PrivilegeError> {
    let read = std::fs::read_dir("/proc/self/task").map_err(|source| PrivilegeError::Read {
        path: "/proc/self/task".into(),
        source,
    })?;
    Ok(read
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// Makes every thread keep only `keep` (see the module doc); the bounding
/// set is only trimmed when `drop_bounding` (the caller has `SETPCAP`).
/// Returns the number of threads that did.
pub fn apply_everywhere(keep: CapabilitySet, last_cap: u8, drop_bounding: bool) -> Result<usize, PrivilegeError> {
    install_handler()?;
    KEEP.store(keep.bits(), Ordering::SeqCst);
    DROP_BOUNDING.store(drop_bounding, Ordering::SeqCst);
    LAST_CAP.store(u32::from(last_cap), Ordering::SeqCst);
    // SAFETY: gettid and getpid have no preconditions.
    let (me, pid) = unsafe { (libc::gettid() as u32, libc::getpid()) };
    drop_in_this_thread().map_err(|(call, errno)| PrivilegeError::Syscall {
        call,
        source: std::io::Error::from_raw_os_error(errno),
    })?;
    let mut done: HashSet<u32> = HashSet::from([me]);
    for _ in 0..MAX_ROUNDS {
        let pending: Vec<u32> = list()?.into_iter().filter(|t| !done.contains(t)).collect();
        if pending.is_empty() {
            break;
        }
        ACKED.store(0, Ordering::SeqCst);
        FAILED.store(0, Ordering::SeqCst);
        let mut sent = 0;
        for tid in pending {
            // SAFETY: tgkill only sends a signal, whose handler is installed.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid as libc::c_int, signal_number()) };
            // ESRCH: the thread exited since it was listed.
            if rc == 0 {
                sent += 1;
            }
            done.insert(tid);
        }
        let deadline = Instant::now() + ROUND_TIMEOUT;
        while ACKED.load(Ordering::SeqCst) < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if FAILED.load(Ordering::SeqCst) > 0 {
            return Err(PrivilegeError::Syscall {
                call: "capset (in another thread)",
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
    }
    Ok(done.len())
}
