//! The running set: the spawned component tasks, those retiring after a
//! reload, and how they are started, stopped and drained (only sources are
//! cancelled; the rest end when their queues close, see the module above).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::component_metrics::{ComponentMetrics, DropReason};
use super::node::{Built, Node, QueueProbe};
use crate::component::{ComponentInfo, ComponentKind};
use crate::config::ComponentConfig;
use crate::event::SharedStr;

/// A component removed or replaced by a reload whose task may still be
/// draining its queue: kept so shutdown can wait for it and count its losses.
struct Retiring {
    info: ComponentInfo,
    probe: Option<QueueProbe>,
    metrics: ComponentMetrics,
    task: Option<JoinHandle<()>>,
}

impl From<Node> for Retiring {
    fn from(node: Node) -> Self {
        Retiring {
            info: node.info,
            probe: node.probe,
            metrics: node.metrics,
            task: node.task,
        }
    }
}

/// Marks a node's work over and wakes whoever waits on
/// [`Running::task_ended`] when its task ends: by returning, panicking or
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

/// Every component task the topology started and has not yet seen end.
pub(super) struct Running {
    nodes: HashMap<SharedStr, Node>,
    retiring: Vec<Retiring>,
    task_ended: Arc<Notify>,
}

impl Running {
    pub(super) fn new() -> Self {
        Running {
            nodes: HashMap::new(),
            retiring: Vec::new(),
            task_ended: Arc::new(Notify::new()),
        }
    }

    /// The current nodes, by id.
    pub(super) fn nodes(&self) -> &HashMap<SharedStr, Node> {
        &self.nodes
    }

    /// Moves the nodes `ids` to the retiring list. Their queues close as
    /// soon as the producers that still feed them finish; sources, which
    /// have no queue, are told to stop.
    pub(super) fn retire<'a>(&mut self, ids: impl IntoIterator<Item = &'a SharedStr>) {
        for id in ids {
            if let Some(node) = self.nodes.remove(id) {
                if node.info.kind == ComponentKind::Source {
                    node.stop.cancel();
                }
                tracing::info!(component = %node.info, "stopping");
                self.retiring.push(node.into());
            }
        }
    }

    /// Gives kept nodes their new configs (the same type and options; the
    /// inputs may differ), so the next reload compares against them.
    pub(super) fn update_configs(&mut self, kept: Vec<ComponentConfig>) {
        for component in kept {
            if let Some(node) = self.nodes.get_mut(&component.id) {
                node.config = component;
            }
        }
    }

    /// Spawns the tasks of `built` and adds their nodes.
    pub(super) fn spawn(&mut self, built: HashMap<SharedStr, Built>) {
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
            // Wiring gave the producers their own senders; this one only
            // kept the queue open until the task was there to drain it.
            drop(sender);
            tracing::info!(component = %node.info, "started");
            self.nodes.insert(id, node);
        }
    }

    /// Forgets retiring components whose task has ended.
    pub(super) fn forget_finished(&mut self) {
        self.retiring
            .retain(|r| r.task.as_ref().is_some_and(|t| !t.is_finished()));
    }

    /// Notified each time a component's task ends (a permit is kept when
    /// nobody waits).
    pub(super) fn task_ended(&self) -> Arc<Notify> {
        Arc::clone(&self.task_ended)
    }

    /// Whether every node's work is over.
    pub(super) fn is_finished(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.values().all(|n| n.done.load(Ordering::Acquire))
    }

    /// Stops the sources and waits, at most `grace`, for every task to end;
    /// returns the events still queued in those that did not (also counted
    /// per component), whose tasks are then aborted.
    pub(super) async fn shutdown(mut self, grace: Duration) -> u64 {
        for node in self.nodes.values() {
            if node.info.kind == ComponentKind::Source {
                node.stop.cancel();
            }
        }
        let mut all: Vec<Retiring> = self.retiring.drain(..).collect();
        all.extend(self.nodes.drain().map(|(_, node)| Retiring::from(node)));
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
