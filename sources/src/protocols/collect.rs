//! The source's state between rounds: the loaded programs, the capture
//! layer, the protocol engine, and the TLS libraries attached so far.

use metrics::Label;
use sonde_core::event::{Event, Timestamp};
use sonde_ebpf::telemetry::LossCounters;
use sonde_ebpf::LoadError;

use super::bpf::{Options, ProtocolPrograms, Records, MAP_CONNS, OBJECT, STATS};
use super::capture::{Capture, Consumer, Followups};
use super::config::ProtocolsSourceConfig;
use super::engine::Engine;
use super::gotls::Untraceable;
use super::listeners::Listeners;
use super::model::{Chunk, ConnId, ConnInfo};
use super::tls::{TlsFile, TlsFinder, TlsKind};
use crate::clock::Clock;

/// Most records handled per drain, so one drain cannot starve the rest
/// of the agent (the next drain follows at once while records wait), and
/// the spans of one drain, built and held as one batch, stay few: at
/// 65,536 a late drain of a full ring held ~16k spans (27 MiB of heap).
pub const DRAIN_LIMIT: usize = 4096;

/// The loaded programs plus what turns their records into events.
#[derive(Debug)]
pub struct Collector {
    programs: ProtocolPrograms,
    capture: Capture,
    engine: Engine,
    listeners: Listeners,
    tls: Option<TlsFinder>,
    telemetry: LossCounters,
    spans: bool,
    malformed: metrics::Counter,
    labels: Vec<Label>,
    /// Spans the last drain completed: the next one's room, so that its
    /// vector of (large) events is not grown, and copied, ten times over.
    last_drained: usize,
}

/// Feeds the engine, collecting the spans it completes.
struct Feed<'a> {
    engine: &'a mut Engine,
    out: &'a mut Vec<Event>,
}

impl Consumer for Feed<'_> {
    fn open(&mut self, info: ConnInfo) {
        self.engine.open(info);
    }
    fn data(&mut self, chunk: Chunk<'_>) {
        self.engine.data(chunk, self.out);
    }
    fn close(&mut self, id: ConnId, at: Timestamp) {
        self.engine.close(id, at, self.out);
    }
}

impl Collector {
    /// Loads and attaches the programs (and the TLS probes to the
    /// libraries processes use now); returns the ring buffer of records
    /// beside. `labels` identify the component in internal metrics.
    pub fn load(config: &ProtocolsSourceConfig, node: String, labels: &[Label]) -> Result<(Self, Records), LoadError> {
        Self::load_with(config, node, labels, true)
    }

    /// As [`Collector::load`]; `exclude_self = false` traces this process
    /// too (the kernel check's own workload).
    pub fn load_with(
        config: &ProtocolsSourceConfig,
        node: String,
        labels: &[Label],
        exclude_self: bool,
    ) -> Result<(Self, Records), LoadError> {
        let mut programs = ProtocolPrograms::load(&Options {
            protocols: config.protocols.clone(),
            capture_bytes: config.capture_bytes,
            ports: config.ports.clone(),
            exclude_comm: config.exclude_comm.clone(),
            max_connections: config.max_connections,
            ring_bytes: config.ring_buffer_bytes,
            exclude_self,
            dns_ports: config.dns_ports.clone(),
        })?;
        let records = programs.take_records().expect("records are taken once");
        let mut collector = Collector {
            programs,
            capture: Capture::default(),
            engine: Engine::new(config.engine_settings(node)),
            listeners: Listeners::read(),
            tls: config.tls.then(TlsFinder::default),
            telemetry: LossCounters::new(labels, OBJECT, STATS, MAP_CONNS),
            spans: config.spans,
            labels: labels.to_vec(),
            last_drained: 0,
            malformed: metrics::counter!(
                sonde_ebpf::telemetry::LOST_EVENTS,
                sonde_ebpf::telemetry::with_label(
                    &sonde_ebpf::telemetry::with_label(labels, "object", OBJECT),
                    "reason",
                    "malformed_record"
                )
            ),
        };
        if let Some(finder) = &mut collector.tls {
            let files = finder.find_all();
            attach_tls(&mut collector.programs, finder, files, &collector.labels);
        }
        Ok((collector, records))
    }

    /// Handles the records waiting now; returns the spans completed and
    /// whether more records may wait (the drain hit its limit).
    pub fn drain(&mut self, records: &mut Records) -> (Vec<Event>, bool) {
        let mut out = Vec::with_capacity(self.last_drained + self.last_drained / 4);
        let mut followups = Followups::default();
        let clock = Clock::now();
        let mut feed = Feed {
            engine: &mut self.engine,
            out: &mut out,
        };
        let (capture, listeners) = (&mut self.capture, &mut self.listeners);
        let (read, malformed) = records.drain(DRAIN_LIMIT, |record| {
            capture.handle(record, &clock, listeners, &mut feed, &mut followups)
        });
        self.malformed.increment(malformed as u64);
        self.follow_up(followups);
        for id in self.engine.take_refused() {
            self.programs.ignore(id.pid, id.fd, id.generation);
        }
        self.last_drained = out.len();
        if !self.spans {
            out.clear();
        }
        (out, read >= DRAIN_LIMIT)
    }

    fn follow_up(&mut self, followups: Followups) {
        for (pid, fds) in followups.exited {
            self.programs.forget(pid, fds);
            if let Some(finder) = &mut self.tls {
                finder.forget(pid);
            }
        }
        if let Some(finder) = &mut self.tls {
            for pid in followups.encrypted {
                let files = finder.find(pid);
                attach_tls(&mut self.programs, finder, files, &self.labels);
            }
        }
    }

    /// Requests and connections idle too long are dropped (counted).
    pub fn expire(&mut self, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        self.engine.expire(now, &mut out);
        if !self.spans {
            out.clear();
        }
        out
    }

    /// The RED metrics and the service graph (cumulative); exports the
    /// engine's and the programs' losses to the internal metrics.
    pub fn metrics(&mut self, now: Timestamp) -> Vec<Event> {
        match self.programs.stats() {
            Ok(stats) => self.telemetry.observe(&stats),
            Err(error) => {
                self.telemetry.map_read_failed();
                tracing::warn!(%error, "cannot read protocols loss counters");
            }
        }
        super::telemetry::export_own(self.engine.metrics(now), &self.labels)
            .into_iter()
            .map(Event::from)
            .collect()
    }

    /// The programs (for their run-time statistics).
    pub fn programs(&self) -> &ProtocolPrograms {
        &self.programs
    }
}

/// Internal counter of executables that use a TLS implementation the
/// probes cannot follow (a stripped Go binary …), by reason.
pub const UNTRACEABLE_EXECUTABLES: &str = "sonde_protocols_untraceable_executables_total";

/// Attaches the TLS probes to each file, logging what was attached; gives
/// the kernel the offsets of Go processes found, and counts (and logs)
/// Go executables that cannot be traced.
fn attach_tls(programs: &mut ProtocolPrograms, finder: &mut TlsFinder, files: Vec<TlsFile>, labels: &[Label]) {
    for file in files {
        let attached = match &file.kind {
            TlsKind::OpenSsl => programs.attach_tls(&file.path),
            TlsKind::Go(go) => programs.attach_go_tls(&file.path, go),
        };
        match attached {
            Ok(probes) => tracing::info!(library = %file.path.display(), probes, "TLS probes attached"),
            Err(error) => tracing::warn!(library = %file.path.display(), %error, "cannot attach TLS probes"),
        }
    }
    for (pid, offsets) in finder.take_go_processes() {
        programs.set_go_offsets(pid, offsets);
    }
    for file in finder.take_untraceable() {
        let reason = match file.reason {
            Untraceable::Stripped => "go_stripped",
            Untraceable::StackAbi(_) => "go_stack_abi",
            Untraceable::UnknownRelease(_) => "go_unknown_release",
            Untraceable::Architecture(_) => "go_architecture",
            Untraceable::NoReturns(_) => "go_no_returns",
        };
        tracing::warn!(
            pid = file.pid,
            executable = %file.path.display(),
            go = %file.build.go_version,
            reason = %file.reason,
            "TLS of this Go program cannot be traced"
        );
        metrics::counter!(
            UNTRACEABLE_EXECUTABLES,
            sonde_ebpf::telemetry::with_label(labels, "reason", reason)
        )
        .increment(1);
    }
}
