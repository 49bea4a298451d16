//! The running set: the spawned component tasks, those retiring after a
//! reload, and how they are started, stopped and drained (only sources are
//! cancelled; the rest end when their queues close, see the module above).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::health::Failures;
use super::node::{Built, Node};
use crate::component::{ComponentInfo, ComponentKind};
use crate::config::ComponentConfig;
use crate::event::SharedStr;

/// How long tasks get, once aborted, to count what they hold and return.
/// They do that at once; only a source stuck outside an await point (a
/// blocking call) takes longer, and is then left behind.
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// A component removed or replaced by a reload whose task may still be
/// draining its queue: kept so shutdown can wait for it and count its losses.
struct Retiring {
    info: ComponentInfo,
    abort: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// Tells a node's sink that the topology is done with it (see [`Serve`]).
fn retire_serve(node: &Node) {
    if let Some(serve) = &node.serve {
        serve.retire();
    }
}

impl From<Node> for Retiring {
    fn from(node: Node) -> Self {
        Retiring {
            info: node.info,
            abort: node.abort,
            task: node.task,
        }
    }
}

/// Why a shutdown stopped waiting for the pipeline to drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Everything accepted was delivered (or dropped for its own reasons).
    Drained,
    /// The grace period ended first.
    GraceOver,
    /// Someone asked for a stop at once (a second signal).
    Forced,
}

/// The message of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
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
    failures: Failures,
}

impl Running {
    pub(super) fn new() -> Self {
        Running {
            nodes: HashMap::new(),
            retiring: Vec::new(),
            task_ended: Arc::new(Notify::new()),
            failures: Failures::default(),
        }
    }

    /// Components that died (a panic, a source's error).
    pub(super) fn failures(&self) -> Failures {
        self.failures.clone()
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
                retire_serve(&node);
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
            let info = node.info.clone();
            let errors = node.metrics.errors.clone();
            let failures = self.failures.clone();
            let slot = node.slot.clone();
            let input = node.input.clone();
            node.task = Some(tokio::spawn(async move {
                let _end = end;
                // A component that dies must not die silently: it is an
                // error in the log, in `errors_total`, in `/health` and in
                // the exit code.
                let failure = match AssertUnwindSafe(run).catch_unwind().await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(payload) => {
                        // Its task counted what it held (`tasks`); its queue
                        // closes so that producers send nowhere rather than
                        // wait for it.
                        if let Some(input) = &input {
                            input.close();
                        }
                        // Its downstream queues must still close, or the
                        // pipeline would wait for it forever.
                        if let Some(slot) = slot {
                            slot.clear();
                        }
                        Some(format!("panicked: {}", panic_message(&*payload)))
                    }
                };
                if let Some(reason) = failure {
                    errors.increment(1);
                    tracing::error!(component = %info, error = %reason, "component failed and stopped");
                    failures.record(&info, reason);
                }
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

    /// Whether the graph has sinks and every one of them has ended (their
    /// destinations closed): nothing the sources make can go anywhere.
    pub(super) fn sinks_finished(&self) -> bool {
        let mut sinks = self
            .nodes
            .values()
            .filter(|n| n.info.kind == ComponentKind::Sink)
            .peekable();
        sinks.peek().is_some() && sinks.all(|n| n.done.load(Ordering::Acquire))
    }

    /// Whether every node's work is over.
    pub(super) fn is_finished(&self) -> bool {
        !self.nodes.is_empty() && self.nodes.values().all(|n| n.done.load(Ordering::Acquire))
    }

    /// Stops the sources and waits for every task to end: at most `grace`,
    /// or until `now` is cancelled (a second signal). Tasks still running
    /// then are aborted: each counts what it holds as dropped (`shutdown`)
    /// and returns.
    pub(super) async fn shutdown(mut self, grace: Duration, now: CancellationToken) -> Stopped {
        for node in self.nodes.values() {
            if node.info.kind == ComponentKind::Source {
                node.stop.cancel();
            }
            retire_serve(node);
        }
        let mut all: Vec<Retiring> = self.retiring.drain(..).collect();
        all.extend(self.nodes.drain().map(|(_, node)| Retiring::from(node)));
        let mut tasks: Vec<(ComponentInfo, JoinHandle<()>)> = all
            .iter_mut()
            .filter_map(|r| Some((r.info.clone(), r.task.take()?)))
            .collect();
        let stopped = {
            let all_ended = futures::future::join_all(tasks.iter_mut().map(|(_, task)| task));
            tokio::select! {
                _ = all_ended => Stopped::Drained,
                _ = tokio::time::sleep(grace) => Stopped::GraceOver,
                _ = now.cancelled() => Stopped::Forced,
            }
        };
        if stopped == Stopped::Drained {
            return stopped;
        }
        // Upstream first: a transform whose consumer already stopped must
        // already know it is an abort, to count its losses as such.
        all.sort_by_key(|r| r.info.kind);
        for r in &all {
            r.abort.cancel();
        }
        for (info, mut task) in tasks {
            // Polling a task that join_all saw end would panic.
            if task.is_finished() {
                continue;
            }
            if tokio::time::timeout(ABORT_WAIT, &mut task).await.is_err() {
                tracing::error!(component = %info, "did not stop within {ABORT_WAIT:?} of being told to; abandoned");
                task.abort();
            }
        }
        stopped
    }
}
