//! The running graph: every component as a tokio task, connected by bounded
//! queues, rebuilt piecewise on reload and drained on shutdown.
//!
//! - A **source** is a future pushing into an [`Output`].
//! - A **transform** task takes batches from its input queue, calls its
//!   service, and pushes the result into its `Output`.
//! - A **sink** task takes batches from its input queue and calls its
//!   service stack (see [`stack`]).
//!
//! Shutdown flows with the data: sources stop, and each queue closes when
//! every producer feeding it has finished, so every accepted event reaches
//! its sinks before their tasks end. Nothing is aborted before the grace
//! period; what is still queued then is counted as dropped.

pub mod component_metrics;
mod instrument;
pub mod retry;
pub mod stack;
mod tasks;

pub use instrument::{Instrument, InstrumentLayer};
// The queues and outputs moved below `component` (a source is handed an
// `Output`); these are the paths component crates and tests know.
pub use crate::edge::{
    queue, InputReceiver, InputSender, Output, OutputSlot, QueueClosed, Queued, SlotGuard, WeakInputSender,
};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::component::{
    BoxError, ComponentInfo, ComponentKind, GlobalContext, SinkContext, SourceContext, TransformContext,
};
use crate::config::{graph, BufferConfig, ComponentConfig, PipelineConfig};
use crate::event::{EventKinds, SharedStr};
use crate::registry::AnyConfig;
use component_metrics::{ComponentMetrics, DropReason};

/// Why a graph could not be (re)built: every component that failed.
#[derive(Debug, thiserror::Error)]
#[error("{}", .failures.iter().map(|(info, e)| format!("{info}: {e}")).collect::<Vec<_>>().join("\n"))]
pub struct TopologyError {
    /// Each failed component with its error.
    pub failures: Vec<(ComponentInfo, BoxError)>,
}

/// How a queue's occupancy is read at shutdown, to count what is lost.
#[derive(Debug, Clone)]
struct QueueProbe {
    semaphore: Arc<Semaphore>,
    capacity: usize,
}

impl QueueProbe {
    fn queued(&self) -> usize {
        self.capacity.saturating_sub(self.semaphore.available_permits())
    }
}

struct Node {
    info: ComponentInfo,
    config: ComponentConfig,
    slot: Option<Arc<OutputSlot>>,
    input: Option<WeakInputSender>,
    probe: Option<QueueProbe>,
    stop: CancellationToken,
    /// Set when the node is spawned.
    task: Option<JoinHandle<()>>,
    /// Set when its task's work is over (just before the task ends, see [`TaskEnd`]).
    done: Arc<AtomicBool>,
    metrics: ComponentMetrics,
}

struct Retiring {
    info: ComponentInfo,
    probe: Option<QueueProbe>,
    metrics: ComponentMetrics,
    task: Option<JoinHandle<()>>,
}

/// Marks a node's work over and wakes whoever waits on
/// [`Topology::task_ended`] when its task ends: by returning, panicking or
/// being aborted (a drop guard, so none of them is missed).
struct TaskEnd {
    done: Arc<AtomicBool>,
    ended: Arc<Notify>,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        self.ended.notify_one();
    }
}

/// A component built but not yet started.
struct Built {
    node: Node,
    sender: Option<InputSender>,
    run: futures::future::BoxFuture<'static, ()>,
}

/// One component as `/graph` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphNode {
    /// The id.
    pub id: SharedStr,
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The type name.
    #[serde(rename = "type")]
    pub type_name: &'static str,
    /// Upstream ids.
    pub inputs: Vec<SharedStr>,
    /// Kinds accepted.
    pub accepts: EventKinds,
    /// Kinds emitted.
    pub outputs: EventKinds,
}

/// The running graph.
pub struct Topology {
    global: GlobalContext,
    nodes: HashMap<SharedStr, Node>,
    order: Vec<SharedStr>,
    retiring: Vec<Retiring>,
    task_ended: Arc<Notify>,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Components started for the first time.
    pub added: Vec<SharedStr>,
    /// Components rebuilt because their type or options changed.
    pub rebuilt: Vec<SharedStr>,
    /// Components stopped.
    pub removed: Vec<SharedStr>,
    /// Components left running.
    pub kept: Vec<SharedStr>,
}

impl Topology {
    /// An empty graph. Installs the agent's metrics recorder if it is not yet,
    /// so component metrics are never silently recorded nowhere.
    pub fn new(global: GlobalContext) -> Self {
        crate::telemetry::install();
        Topology {
            global,
            nodes: HashMap::new(),
            order: Vec::new(),
            retiring: Vec::new(),
            task_ended: Arc::new(Notify::new()),
        }
    }

    /// Builds and starts `config`.
    pub fn start(config: PipelineConfig, global: GlobalContext) -> Result<Self, TopologyError> {
        let mut topology = Topology::new(global);
        topology.apply(config)?;
        Ok(topology)
    }

    /// The running graph, in config order.
    pub fn graph(&self) -> Vec<GraphNode> {
        // Recomputed from the live configs; cheap, and only for `/graph`.
        let outputs = graph::output_kinds(self.nodes.values().map(|n| &n.config));
        self.order
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|n| GraphNode {
                id: n.info.id.clone(),
                kind: n.info.kind,
                type_name: n.info.type_name,
                inputs: n.config.inputs.iter().map(|i| i.id.clone()).collect(),
                accepts: graph::accepts(&n.config),
                outputs: outputs.get(&*n.info.id).copied().unwrap_or_default(),
            })
            .collect()
    }

    /// Moves the running graph to `config`: builds what is new or changed,
    /// rewires, and retires what is gone. Components whose type and options
    /// are unchanged keep running untouched. If any component fails to build,
    /// nothing changes and every failure is returned.
    pub fn apply(&mut self, config: PipelineConfig) -> Result<ReloadSummary, TopologyError> {
        let mut summary = ReloadSummary::default();
        let mut to_build = Vec::new();
        let mut kept_configs = Vec::new();
        let new_ids: HashSet<SharedStr> = config.components.iter().map(|c| c.id.clone()).collect();
        let order: Vec<SharedStr> = config.components.iter().map(|c| c.id.clone()).collect();
        for component in config.components {
            match self.nodes.get(&component.id) {
                Some(node) if !node.config.needs_rebuild(&component) => kept_configs.push(component),
                Some(_) => {
                    summary.rebuilt.push(component.id.clone());
                    to_build.push(component);
                }
                None => {
                    summary.added.push(component.id.clone());
                    to_build.push(component);
                }
            }
        }
        summary.removed = self.nodes.keys().filter(|id| !new_ids.contains(*id)).cloned().collect();
        summary.kept = kept_configs.iter().map(|c| c.id.clone()).collect();

        // Build everything first, so a failure leaves the running graph alone.
        let mut built: HashMap<SharedStr, Built> = HashMap::new();
        let mut failures = Vec::new();
        for component in to_build {
            let info = ComponentInfo {
                kind: component.kind,
                id: component.id.clone(),
                type_name: component.type_name,
            };
            match self.build(component) {
                Ok(b) => {
                    built.insert(info.id.clone(), b);
                }
                Err(error) => failures.push((info, error)),
            }
        }
        if !failures.is_empty() {
            for b in built.values() {
                b.node.stop.cancel();
            }
            return Err(TopologyError { failures });
        }

        // Wire: every producer's slot gets the queues of its new consumers.
        let all_configs: Vec<&ComponentConfig> = kept_configs
            .iter()
            .chain(built.values().map(|b| &b.node.config))
            .collect();
        let mut senders: HashMap<SharedStr, InputSender> = HashMap::new();
        for c in &all_configs {
            if c.kind == ComponentKind::Source {
                continue;
            }
            let sender = match built.get(&c.id) {
                Some(b) => b.sender.clone(),
                None => self
                    .nodes
                    .get(&c.id)
                    .and_then(|n| n.input.as_ref())
                    .and_then(WeakInputSender::upgrade),
            };
            if let Some(sender) = sender {
                senders.insert(c.id.clone(), sender);
            }
        }
        let mut targets: HashMap<SharedStr, Vec<InputSender>> = HashMap::new();
        for c in &all_configs {
            for input in &c.inputs {
                if let Some(sender) = senders.get(&c.id) {
                    targets.entry(input.id.clone()).or_default().push(sender.clone());
                }
            }
        }
        for c in &all_configs {
            let slot = match built.get(&c.id) {
                Some(b) => b.node.slot.clone(),
                None => self.nodes.get(&c.id).and_then(|n| n.slot.clone()),
            };
            if let Some(slot) = slot {
                slot.set(targets.remove(&c.id).unwrap_or_default());
            }
        }
        drop(senders);

        // Retire what is gone or replaced. Their queues close as soon as the
        // producers that still feed them finish; sources are told to stop.
        let replaced: Vec<SharedStr> = summary.removed.iter().chain(&summary.rebuilt).cloned().collect();
        for id in replaced {
            if let Some(node) = self.nodes.remove(&id) {
                if node.info.kind == ComponentKind::Source {
                    node.stop.cancel();
                }
                tracing::info!(component = %node.info, "stopping");
                self.retiring.push(Retiring {
                    info: node.info,
                    probe: node.probe,
                    metrics: node.metrics,
                    task: node.task,
                });
            }
        }
        for component in kept_configs {
            if let Some(node) = self.nodes.get_mut(&component.id) {
                node.config = component;
            }
        }
        for (id, b) in built {
            let Built { mut node, sender, run } = b;
            let end = TaskEnd {
                done: Arc::clone(&node.done),
                ended: Arc::clone(&self.task_ended),
            };
            node.task = Some(tokio::spawn(async move {
                let _end = end;
                run.await;
            }));
            drop(sender);
            tracing::info!(component = %node.info, "started");
            self.nodes.insert(id, node);
        }
        self.order = order;
        self.retiring
            .retain(|r| r.task.as_ref().is_some_and(|t| !t.is_finished()));
        Ok(summary)
    }

    fn build(&self, config: ComponentConfig) -> Result<Built, BoxError> {
        let info = ComponentInfo {
            kind: config.kind,
            id: config.id.clone(),
            type_name: config.type_name,
        };
        let metrics = ComponentMetrics::new(&info);
        let stop = CancellationToken::new();
        let global = self.global.clone();
        let accepts = graph::accepts(&config);
        let (node, sender, run): (Node, Option<InputSender>, futures::future::BoxFuture<'static, ()>) =
            match &config.options {
                AnyConfig::Source(source) => {
                    let slot = OutputSlot::new();
                    let out = Output::new(slot.clone(), metrics.sent_events.clone(), metrics.sent_batches.clone());
                    let future = source.build(SourceContext {
                        info: info.clone(),
                        global,
                        out,
                        shutdown: stop.clone(),
                    })?;
                    let run_info = info.clone();
                    let run_slot = slot.clone();
                    let run = Box::pin(async move {
                        if let Err(error) = future.await {
                            tracing::error!(component = %run_info, %error, "source failed");
                        }
                        run_slot.clear();
                        tracing::debug!(component = %run_info, "source finished");
                    });
                    let node = Node {
                        done: Arc::default(),
                        info: info.clone(),
                        config,
                        slot: Some(slot),
                        input: None,
                        probe: None,
                        stop,
                        task: None,
                        metrics,
                    };
                    (node, None, run)
                }
                AnyConfig::Transform(transform) => {
                    let service = transform.build(&TransformContext {
                        info: info.clone(),
                        global,
                    })?;
                    let service = stack::transform_stack(service, &metrics);
                    let (sender, receiver, probe) = make_queue(&BufferConfig::default(), &metrics);
                    let slot = OutputSlot::new();
                    let out = Output::new(slot.clone(), metrics.sent_events.clone(), metrics.sent_batches.clone());
                    let run = Box::pin(tasks::run_transform(
                        info.clone(),
                        receiver,
                        service,
                        out,
                        slot.clone(),
                        accepts,
                        metrics.clone(),
                    ));
                    let node = Node {
                        done: Arc::default(),
                        info: info.clone(),
                        config,
                        slot: Some(slot),
                        input: Some(sender.downgrade()),
                        probe: Some(probe),
                        stop,
                        task: None,
                        metrics,
                    };
                    (node, Some(sender), run)
                }
                AnyConfig::Sink(sink) => {
                    let service = sink.build(&SinkContext {
                        info: info.clone(),
                        global,
                        shutdown: stop.clone(),
                    })?;
                    let service = stack::sink_stack(service, &info, &config.request, &metrics);
                    let (sender, receiver, probe) = make_queue(&config.buffer, &metrics);
                    let batching = config.batch.or_else(|| sink.default_batch()).map(|mut b| {
                        // Waiting for more events than the buffer holds would only wait for the timeout.
                        b.max_events = b.max_events.clamp(1, config.buffer.max_events.max(1));
                        b
                    });
                    let settings = tasks::SinkSettings {
                        concurrency: config.request.concurrency,
                        accepts,
                        batching,
                    };
                    let run = Box::pin(tasks::run_sink(
                        info.clone(),
                        receiver,
                        service,
                        settings,
                        metrics.clone(),
                        stop.clone(),
                    ));
                    let node = Node {
                        done: Arc::default(),
                        info: info.clone(),
                        config,
                        slot: None,
                        input: Some(sender.downgrade()),
                        probe: Some(probe),
                        stop,
                        task: None,
                        metrics,
                    };
                    (node, Some(sender), run)
                }
            };
        Ok(Built { node, sender, run })
    }

    /// Notified each time a component's task ends (a permit is kept when
    /// nobody waits), so the agent waits for [`Topology::is_finished`]
    /// without polling it: an idle agent should not wake up for nothing.
    pub fn task_ended(&self) -> Arc<Notify> {
        Arc::clone(&self.task_ended)
    }

    /// Whether every component has finished on its own (all sources ended
    /// and everything they produced was delivered).
    pub fn is_finished(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.values().all(|n| n.done.load(Ordering::Acquire))
    }

    /// Stops the sources and waits, at most `grace`, for every accepted event
    /// to reach the sinks. Returns the number of events dropped because the
    /// grace period ended first (also counted per component).
    pub async fn shutdown(mut self, grace: Duration) -> u64 {
        for node in self.nodes.values() {
            if node.info.kind == ComponentKind::Source {
                node.stop.cancel();
            }
        }
        let mut all: Vec<Retiring> = self.retiring.drain(..).collect();
        for (_, node) in self.nodes.drain() {
            all.push(Retiring {
                info: node.info,
                probe: node.probe,
                metrics: node.metrics,
                task: node.task,
            });
        }
        let deadline = tokio::time::Instant::now() + grace;
        let mut dropped = 0;
        for r in all {
            let Some(mut task) = r.task else { continue };
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(_) => {}
                Err(_) => {
                    let lost = r.probe.as_ref().map_or(0, QueueProbe::queued) as u64;
                    task.abort();
                    r.metrics.dropped(DropReason::Shutdown).increment(lost);
                    dropped += lost;
                    tracing::error!(component = %r.info, events = lost, "shutdown grace period over, events dropped");
                }
            }
        }
        dropped
    }
}

fn make_queue(buffer: &BufferConfig, metrics: &ComponentMetrics) -> (InputSender, InputReceiver, QueueProbe) {
    let (sender, receiver) = queue(
        buffer.max_events,
        buffer.when_full,
        metrics.dropped(DropReason::BufferFull).clone(),
    );
    let probe = QueueProbe {
        semaphore: sender.semaphore(),
        capacity: buffer.max_events.clamp(1, Semaphore::MAX_PERMITS),
    };
    (sender, receiver, probe)
}
