//! A `protocols` collector draining its ring buffer on a thread of its
//! own while a test's workload runs, as the agent's loop does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sonde_core::event::{Event, Span, Value};
use sonde_sources::clock::Clock;
use sonde_sources::protocols::bpf::Records;
use sonde_sources::protocols::capture::{Capture, Consumer, Followups};
use sonde_sources::protocols::collect::Collector;
use sonde_sources::protocols::config::ProtocolsSourceConfig;
use sonde_sources::protocols::listeners::Listeners;

/// Hands the records of `wait` to `consumer` through the capture layer
/// (no engine): what the kernel side delivered, as the engine gets it.
pub fn capture_into(records: &mut Records, wait: Duration, consumer: &mut impl Consumer) {
    let mut capture = Capture::default();
    let mut listeners = Listeners::read();
    let mut followups = Followups::default();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        let clock = Clock::now();
        records.drain(usize::MAX, |record| {
            capture.handle(record, &clock, &mut listeners, consumer, &mut followups)
        });
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A collector draining its ring buffer on a thread of its own while the
/// workload runs (as the agent's loop does), keeping the spans.
pub struct Tracer {
    stop: Arc<AtomicBool>,
    spans: Arc<Mutex<Vec<Span>>>,
    thread: std::thread::JoinHandle<Collector>,
}

impl Tracer {
    pub fn start(config: &ProtocolsSourceConfig) -> Tracer {
        let (mut collector, mut records) = Collector::load(config, "test-node".to_string(), &[]).expect("load");
        let stop = Arc::new(AtomicBool::new(false));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let (stopping, kept) = (stop.clone(), spans.clone());
        let thread = std::thread::spawn(move || loop {
            let last = stopping.load(Ordering::SeqCst);
            let (events, _) = collector.drain(&mut records);
            kept.lock().unwrap().extend(events.into_iter().filter_map(|e| match e {
                Event::Span(s) => Some(*s),
                _ => None,
            }));
            if last {
                return collector;
            }
            std::thread::sleep(Duration::from_millis(20));
        });
        Tracer { stop, spans, thread }
    }

    /// Waits until `done` holds of the spans so far (or `wait` passes),
    /// then stops; returns the collector and every span.
    pub fn finish(self, wait: Duration, done: impl Fn(&[Span]) -> bool) -> (Collector, Vec<Span>) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !done(&self.spans.lock().unwrap()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::SeqCst);
        let collector = self.thread.join().unwrap();
        let spans = std::mem::take(&mut *self.spans.lock().unwrap());
        (collector, spans)
    }
}

/// A span field as text (integers in decimal; absent: `None`).
pub fn text(span: &Span, key: &str) -> String {
    match span.fields.get(key) {
        Some(Value::Str(s)) => s.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}
