//! The source's loop. Draining and symbolizing block (map syscalls, ELF
//! and DWARF parsing), and blazesym's symbolizer is not `Send`, so they run
//! on a dedicated thread, which also reads new processes as the program
//! announces them. The async half forwards its batches into the pipeline,
//! where backpressure may hold them: meanwhile the kernel keeps counting
//! into its maps, so a slow pipeline delays profiles but loses no sample.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bpf::NewPids;
use sonde_core::event::{Event, EventBatch};
use sonde_core::{BoxError, SourceContext};
use sonde_ebpf::ReadError;
use tokio::sync::mpsc;

use super::symbolize::Symbols;

/// A source of `Profile`s that drains kernel maps and symbolizes on the
/// collecting thread (`profile`, `offcpu`).
pub trait StackSource: Send + 'static {
    /// The collecting thread's name.
    const THREAD: &'static str;
    /// Empty symbol caches (created on the collecting thread: not `Send`).
    fn symbols(&self) -> Symbols;
    /// The ring buffer announcing new processes, if the source has one (once).
    fn take_new_pids(&mut self) -> Option<NewPids>;
    /// Reads newly announced processes while they live.
    fn note_new_pids(&mut self, pids: &[u32], symbols: &mut Symbols);
    /// One interval's profiles.
    fn collect(&mut self, symbols: &mut Symbols) -> Result<Vec<Event>, ReadError>;
}

/// How long the last round at shutdown may wait for the pipeline.
const FINAL_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Emits one batch of profiles every `interval` until shutdown, and a last
/// one at shutdown.
pub async fn run<C: StackSource>(collector: C, interval: Duration, mut cx: SourceContext) -> Result<(), BoxError> {
    let (tx, mut rx) = mpsc::channel::<Vec<Event>>(1);
    let stop = Arc::new(Stop::new()?);
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name(C::THREAD.into())
            .spawn(move || collect_loop(collector, interval, tx, &stop))?
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            batch = rx.recv() => {
                let Some(events) = batch else { break };
                let send = cx.out.send(EventBatch::new(events));
                if stopping {
                    match tokio::time::timeout(FINAL_SEND_TIMEOUT, send).await {
                        Ok(result) => result?,
                        Err(_) => tracing::warn!(component = %cx.info, "last profiles not accepted in time"),
                    }
                } else {
                    tokio::select! {
                        result = send => result?,
                        // Stuck behind a full pipeline at shutdown: the
                        // thread's last round is coming.
                        _ = cx.shutdown.cancelled() => {
                            stopping = true;
                            stop.set();
                        }
                    }
                }
            }
            _ = cx.shutdown.cancelled(), if !stopping => {
                stopping = true;
                stop.set();
            }
        }
    }
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| format!("the {} collecting thread panicked", C::THREAD))?;
    tracing::debug!(component = %cx.info, "source stopped");
    Ok(())
}

/// Tells the collecting thread to stop, waking it at once: it sleeps in
/// `poll` on the ring buffer and this eventfd, so an idle agent wakes only
/// for new processes and intervals, never to look at a flag.
struct Stop {
    flag: AtomicBool,
    wake: OwnedFd,
}

impl Stop {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes two integers and returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Stop {
            flag: AtomicBool::new(false),
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        let one = 1u64;
        // SAFETY: writes the 8 bytes of `one`, which outlives the call, to
        // an eventfd this struct owns. A full counter (EAGAIN) still wakes.
        unsafe {
            libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8);
        }
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }
}

/// The collecting thread: reads announced processes as they come, and
/// drains and symbolizes every `interval`, and once more when `stop` is set.
fn collect_loop<C: StackSource>(mut collector: C, interval: Duration, tx: mpsc::Sender<Vec<Event>>, stop: &Stop) {
    let mut symbols = collector.symbols();
    let mut new_pids = collector.take_new_pids();
    let mut next = Instant::now() + interval;
    loop {
        let stopping = stop.is_set();
        let now = Instant::now();
        if !stopping && now < next {
            let ring = new_pids.as_ref().map(AsRawFd::as_raw_fd);
            wait_readable(ring, stop.wake.as_raw_fd(), next - now);
            if let Some(ring) = &mut new_pids {
                read_announced(ring, &mut collector, &mut symbols);
            }
            continue;
        }
        next = (next + interval).max(now);
        if let Some(ring) = &mut new_pids {
            read_announced(ring, &mut collector, &mut symbols);
        }
        match collector.collect(&mut symbols) {
            Ok(events) if !events.is_empty() => {
                if tx.blocking_send(events).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, thread = C::THREAD, "profile read failed"),
        }
        if stopping {
            break;
        }
    }
}

fn read_announced<C: StackSource>(ring: &mut NewPids, collector: &mut C, symbols: &mut Symbols) {
    let pids = ring.read();
    if !pids.is_empty() {
        collector.note_new_pids(&pids, symbols);
    }
}

/// Waits until the ring buffer (if any) has data, `stop` is readable, or
/// `timeout` passes (rounded up to a millisecond: never a busy loop).
fn wait_readable(ring: Option<RawFd>, stop: RawFd, timeout: Duration) {
    let pollfd = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // A negative descriptor is ignored by poll.
    let mut fds = [pollfd(stop), pollfd(ring.unwrap_or(-1))];
    let millis = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: `fds` is an array of two initialised pollfds that outlives
    // the call, and its length is passed. An error (EINTR) just ends the
    // wait early.
    unsafe {
        libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis);
    }
}
