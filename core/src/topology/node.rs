//! Building one component into a [`Node`]: its task's future, its input
//! queue and its output slot, ready to be wired and spawned. Nothing here
//! starts a task, so a reload whose build fails leaves the graph alone.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::component_metrics::{self, ComponentMetrics, DropReason};
use super::{disk_sink, stack, tasks, TopologyError};
use crate::buffer::{BufferMetrics, DiskQueue};
use crate::component::{
    BoxError, BufferConfig, BufferType, ComponentInfo, GlobalContext, SinkContext, SourceContext, TransformContext,
};
use crate::config::{graph, ComponentConfig};
use crate::edge::{queue, InputReceiver, InputSender, Output, OutputSlot, QueueMetrics, WeakInputSender};
use crate::event::SharedStr;
use crate::registry::AnyConfig;

/// One component of the graph, built, and running once `task` is set.
pub(super) struct Node {
    pub(super) info: ComponentInfo,
    pub(super) config: ComponentConfig,
    /// Where its output goes (sources and transforms); rewired on reload.
    pub(super) slot: Option<Arc<OutputSlot>>,
    /// Its input queue (transforms and sinks). Weak, so the queue closes
    /// once the producers holding strong senders are gone.
    pub(super) input: Option<WeakInputSender>,
    /// Stops a source; for a sink, cancelled when its task ends (its
    /// context's `shutdown`). A child of `abort`.
    pub(super) stop: CancellationToken,
    /// A stop that cannot wait: every task counts what it holds as dropped
    /// and returns (see `tasks`).
    pub(super) abort: CancellationToken,
    /// Set when the node is spawned.
    pub(super) task: Option<JoinHandle<()>>,
    /// Set when its task's work is over (just before the task ends, see
    /// `running::TaskEnd`).
    pub(super) done: Arc<AtomicBool>,
    pub(super) metrics: ComponentMetrics,
    /// A sink's background work (a scrape endpoint): its context's
    /// `shutdown`, cancelled once the sink is retired or the agent stops.
    pub(super) serve: Option<Serve>,
}

/// When a sink's background work ends: not when its inputs end (a scrape
/// endpoint serves what it holds until the agent stops), but once its task
/// has ended *and* the topology retired it (a reload removed it, or the
/// agent stops), whichever comes last. A sink may also cancel the token
/// itself (its destination is gone for good): its task then stops.
#[derive(Clone, Debug)]
pub(super) struct Serve {
    token: CancellationToken,
    /// 0 running, 1 task ended, 2 retired.
    state: Arc<AtomicU8>,
}

impl Serve {
    fn new(token: CancellationToken) -> Self {
        Serve {
            token,
            state: Arc::new(AtomicU8::new(0)),
        }
    }

    fn task_ended(&self) {
        if self
            .state
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.token.cancel();
        }
    }

    /// The topology is done with the sink (removed by a reload, or the
    /// agent stops): its background work ends once its task has.
    pub(super) fn retire(&self) {
        if self.state.swap(2, Ordering::AcqRel) == 1 {
            self.token.cancel();
        }
    }

    /// Ends the background work now (a build that failed).
    fn cancel(&self) {
        self.token.cancel();
    }
}

/// A component built but not yet started.
pub(super) struct Built {
    pub(super) node: Node,
    /// A strong sender to its queue, held until the task is spawned so the
    /// queue cannot close before its producers are wired to it.
    pub(super) sender: Option<InputSender>,
    /// The task; an error is the component failing (a source's).
    pub(super) run: BoxFuture<'static, Result<(), BoxError>>,
}

/// Builds every component of `to_build`, or none: on any failure, what was
/// built is cancelled and every failure is returned.
pub(super) fn build_all(
    to_build: Vec<ComponentConfig>,
    global: &GlobalContext,
    data_dir: &Path,
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
        match build(component, global, data_dir) {
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
            if let Some(serve) = &b.node.serve {
                serve.cancel();
            }
        }
        return Err(TopologyError { failures, locations });
    }
    Ok(built)
}

fn build(config: ComponentConfig, global: &GlobalContext, data_dir: &Path) -> Result<Built, BoxError> {
    let info = ComponentInfo {
        kind: config.kind,
        id: config.id.clone(),
        type_name: config.type_name,
    };
    let metrics = ComponentMetrics::new(&info);
    let abort = CancellationToken::new();
    let stop = abort.child_token();
    let global = global.clone();
    let accepts = graph::accepts(&config);
    type Run = BoxFuture<'static, Result<(), BoxError>>;
    let (node, sender, run): (Node, Option<InputSender>, Run) = match &config.options {
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
                let result = future.await;
                run_slot.clear();
                tracing::debug!(component = %run_info, "source finished");
                result
            });
            let node = Node {
                done: Arc::default(),
                info: info.clone(),
                config,
                slot: Some(slot),
                input: None,
                stop,
                abort,
                task: None,
                metrics,
                serve: None,
            };
            (node, None, run)
        }
        AnyConfig::Transform(transform) => {
            let service = transform.build(&TransformContext {
                info: info.clone(),
                global,
            })?;
            let service = stack::transform_stack(service, &metrics);
            let (sender, receiver) = make_queue(&BufferConfig::default(), &info, &metrics);
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
                abort.clone(),
            ))
            .map(Ok)
            .boxed();
            let node = Node {
                done: Arc::default(),
                info: info.clone(),
                config,
                slot: Some(slot),
                input: Some(sender.downgrade()),
                stop,
                abort,
                task: None,
                metrics,
                serve: None,
            };
            (node, Some(sender), run)
        }
        AnyConfig::Sink(sink) => {
            let serve = Serve::new(abort.child_token());
            let service = sink.build(&SinkContext {
                info: info.clone(),
                global,
                shutdown: serve.token.clone(),
            })?;
            let service = stack::sink_stack(service, &info, &config.request, &metrics);
            let disk = match config.buffer.kind {
                BufferType::Memory => None,
                BufferType::Disk => Some(open_disk_buffer(data_dir, &config.buffer, &info, &metrics)?),
            };
            let intake = match disk {
                // Only what is on its way to the disk: a batch or so.
                Some(_) => BufferConfig {
                    max_events: DISK_INTAKE_EVENTS,
                    ..config.buffer
                },
                None => config.buffer,
            };
            let (sender, receiver) = make_queue(&intake, &info, &metrics);
            let batching = config.batch.or_else(|| sink.default_batch()).map(|mut b| {
                // Waiting for more events than the buffer holds would only wait for the timeout.
                if disk.is_none() {
                    b.max_events = b.max_events.clamp(1, config.buffer.max_events.max(1));
                }
                b.max_events = b.max_events.max(1);
                b
            });
            let settings = tasks::SinkSettings {
                concurrency: config.request.concurrency,
                accepts,
                batching,
            };
            let run: Run = match disk {
                Some(queue) => Box::pin(disk_sink::run_disk_sink(
                    info.clone(),
                    receiver,
                    queue,
                    config.buffer.when_full,
                    service,
                    settings,
                    metrics.clone(),
                    stop.clone(),
                    abort.clone(),
                ))
                .map(Ok)
                .boxed(),
                None => Box::pin(tasks::run_sink(
                    info.clone(),
                    receiver,
                    service,
                    settings,
                    metrics.clone(),
                    stop.clone(),
                    abort.clone(),
                ))
                .map(Ok)
                .boxed(),
            };
            // The sink cancelling its context's token (its destination is
            // gone) stops its task; the task's end lets background work
            // end once the topology has retired the sink.
            let run = {
                let serve = serve.clone();
                let stop = stop.clone();
                Box::pin(async move {
                    let linked = async {
                        serve.token.cancelled().await;
                        stop.cancel();
                        std::future::pending::<()>().await
                    };
                    let result = tokio::select! {
                        result = run => result,
                        () = linked => Ok(()),
                    };
                    serve.task_ended();
                    result
                })
            };
            let node = Node {
                done: Arc::default(),
                info: info.clone(),
                config,
                slot: None,
                input: Some(sender.downgrade()),
                stop,
                abort,
                task: None,
                metrics,
                serve: Some(serve),
            };
            (node, Some(sender), run)
        }
    };
    Ok(Built { node, sender, run })
}

/// Capacity of the memory queue in front of a disk buffer, in events.
const DISK_INTAKE_EVENTS: usize = 1000;

/// Opens the disk buffer of a sink: `DATA_DIR/<sink id>/`.
fn open_disk_buffer(
    data_dir: &Path,
    buffer: &BufferConfig,
    info: &ComponentInfo,
    metrics: &ComponentMetrics,
) -> Result<Arc<DiskQueue>, BoxError> {
    let dir = data_dir.join(&*info.id);
    let buffer_metrics = BufferMetrics::new(
        component_metrics::labels(info),
        metrics.dropped(DropReason::Corrupted).clone(),
    );
    let queue = DiskQueue::open(&dir, buffer.max_size, buffer_metrics, info.to_string())
        .map_err(|e| format!("disk buffer in {}: {e}", dir.display()))?;
    Ok(queue)
}

fn make_queue(buffer: &BufferConfig, info: &ComponentInfo, metrics: &ComponentMetrics) -> (InputSender, InputReceiver) {
    let queue_metrics = QueueMetrics {
        owner: info.to_string(),
        dropped: metrics.dropped(DropReason::BufferFull).clone(),
        buffered: metrics.buffer_events.clone(),
    };
    queue(buffer.max_events, buffer.when_full, queue_metrics)
}
