//! The source's loop. Draining and symbolizing block (map syscalls, ELF
//! and DWARF parsing), and blazesym's symbolizer is not `Send`, so they run
//! on a dedicated thread, which also reads new processes as the program
//! announces them. The async half forwards its batches into the pipeline,
//! where backpressure may hold them: meanwhile the kernel keeps counting
//! into its maps, so a slow pipeline delays profiles but loses no sample.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sonde_core::event::{Event, EventBatch};
use sonde_core::{BoxError, SourceContext};
use sonde_ebpf::profile::NewPids;
use tokio::sync::mpsc;

use super::collect::Collector;
use super::symbolize::Symbols;

/// How long the last round at shutdown may wait for the pipeline.
const FINAL_SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// The collecting thread checks for shutdown at least this often.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Emits one batch of profiles every `interval` until shutdown, and a last
/// one at shutdown.
pub(super) async fn run(collector: Collector, interval: Duration, mut cx: SourceContext) -> Result<(), BoxError> {
    let (tx, mut rx) = mpsc::channel::<Vec<Event>>(1);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("sonde-profile".into())
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
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            _ = cx.shutdown.cancelled(), if !stopping => {
                stopping = true;
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| "the profile collecting thread panicked")?;
    tracing::debug!(component = %cx.info, "profile source stopped");
    Ok(())
}

/// The collecting thread: reads announced processes as they come, and
/// drains and symbolizes every `interval`, and once more when `stop` is set.
fn collect_loop(mut collector: Collector, interval: Duration, tx: mpsc::Sender<Vec<Event>>, stop: &AtomicBool) {
    let mut symbols = collector.symbols();
    let mut new_pids = collector.take_new_pids();
    let mut next = Instant::now() + interval;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let now = Instant::now();
        if !stopping && now < next {
            let wait = (next - now).min(STOP_CHECK);
            match &mut new_pids {
                Some(ring) => {
                    wait_readable(ring, wait);
                    read_announced(ring, &mut collector, &mut symbols);
                }
                None => std::thread::sleep(wait),
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
            Err(error) => tracing::warn!(%error, "profile read failed"),
        }
        if stopping {
            break;
        }
    }
}

fn read_announced(ring: &mut NewPids, collector: &mut Collector, symbols: &mut Symbols) {
    let pids = ring.read();
    if !pids.is_empty() {
        collector.note_new_pids(&pids, symbols);
    }
}

/// Waits until the ring buffer has data or `timeout` passes.
fn wait_readable(ring: &NewPids, timeout: Duration) {
    let mut fd = libc::pollfd {
        fd: ring.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `fd` is one valid, initialised pollfd that outlives the call,
    // and the count passed is 1. An error (EINTR) just ends the wait early.
    unsafe {
        libc::poll(&mut fd, 1, millis);
    }
}
