//! Building one component into a [`Node`]: its task's future, its input
//! queue and its output slot, ready to be wired and spawned. Nothing here
//! starts a task, so a reload whose build fails leaves the graph alone.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::component_metrics::{ComponentMetrics, DropReason};
use super::{stack, tasks, TopologyError};
use crate::component::{
    BoxError, BufferConfig, ComponentInfo, GlobalContext, SinkContext, SourceContext, TransformContext,
};
use crate::config::{graph, ComponentConfig};
use crate::edge::{queue, InputReceiver, InputSender, Output, OutputSlot, WeakInputSender};
use crate::event::SharedStr;
use crate::registry::AnyConfig;

/// How a queue's occupancy is read at shutdown, to count what is lost.
#[derive(Debug, Clone)]
pub(super) struct QueueProbe {
    semaphore: Arc<Semaphore>,
    capacity: usize,
}

impl QueueProbe {
    /// Events accepted into the queue and not yet delivered.
    pub(super) fn queued(&self) -> usize {
        self.capacity.saturating_sub(self.semaphore.available_permits())
    }
}

/// One component of the graph, built, and running once `task` is set.
pub(super) struct Node {
    pub(super) info: ComponentInfo,
    pub(super) config: ComponentConfig,
    /// Where its output goes (sources and transforms); rewired on reload.
    pub(super) slot: Option<Arc<OutputSlot>>,
    /// Its input queue (transforms and sinks). Weak, so the queue closes
    /// once the producers holding strong senders are gone.
    pub(super) input: Option<WeakInputSender>,
    pub(super) probe: Option<QueueProbe>,
    pub(super) stop: CancellationToken,
    /// Set when the node is spawned.
    pub(super) task: Option<JoinHandle<()>>,
    /// Set when its task's work is over (just before the task ends, see
    /// `running::TaskEnd`).
    pub(super) done: Arc<AtomicBool>,
    pub(super) metrics: ComponentMetrics,
}

/// A component built but not yet started.
pub(super) struct Built {
    pub(super) node: Node,
    /// A strong sender to its queue, held until the task is spawned so the
    /// queue cannot close before its producers are wired to it.
    pub(super) sender: Option<InputSender>,
    pub(super) run: BoxFuture<'static, ()>,
}

/// Builds every component of `to_build`, or none: on any failure, what was
/// built is cancelled and every failure is returned.
pub(super) fn build_all(
    to_build: Vec<ComponentConfig>,
    global: &GlobalContext,
) -> Result<HashMap<SharedStr, Built>, TopologyError> {
    let mut built: HashMap<SharedStr, Built> = HashMap::new();
    let mut failures = Vec::new();
    let mut locations = Vec::new();
    for component in to_build {
        let info = ComponentInfo {
            kind: component.kind,
            id: component.id.clone(),
            type_name: component.type_name,
        };
        let location = component.location.clone();
        match build(component, global) {
            Ok(b) => {
                built.insert(info.id.clone(), b);
            }
            Err(error) => {
                failures.push((info, error));
                locations.push(location);
            }
        }
    }
    if !failures.is_empty() {
        for b in built.values() {
            b.node.stop.cancel();
        }
        return Err(TopologyError { failures, locations });
    }
    Ok(built)
}

fn build(config: ComponentConfig, global: &GlobalContext) -> Result<Built, BoxError> {
    let info = ComponentInfo {
        kind: config.kind,
        id: config.id.clone(),
        type_name: config.type_name,
    };
    let metrics = ComponentMetrics::new(&info);
    let stop = CancellationToken::new();
    let global = global.clone();
    let accepts = graph::accepts(&config);
    let (node, sender, run): (Node, Option<InputSender>, BoxFuture<'static, ()>) = match &config.options {
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
