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
//! period ends or a second signal comes; then every task counts what it
//! still holds as dropped and returns (see `tasks`).
//!
//! One file per step of a (re)load: `diff.rs` decides what changed,
//! `node.rs` builds the new components, `wiring.rs` connects outputs to
//! queues, and `running.rs` starts, retires and drains the tasks, whose
//! loops are in `tasks.rs`; `loss.rs` counts what a task cannot deliver,
//! `health.rs` keeps the components that died, and `summary.rs` gives the
//! final account.

mod causes;
pub mod component_metrics;
mod diff;
mod health;
mod instrument;
mod loss;
mod node;
pub mod retry;
mod running;
pub mod stack;
pub mod summary;
mod tasks;
#[cfg(test)]
mod tests;
mod wiring;

pub use diff::ReloadSummary;
pub use health::{Failure, Failures};
pub use instrument::{Instrument, InstrumentLayer};
pub use running::Stopped;

// The queues and outputs moved below `component` (a source is handed an
// `Output`); these are the paths component crates and tests know.
pub use crate::edge::tap::{Subscription, TapPoint, Taps, TAP_CHANNEL_BATCHES};
pub use crate::edge::{
    queue, InputReceiver, InputSender, Output, OutputSlot, QueueClosed, QueueMetrics, Queued, SlotGuard,
    WeakInputSender,
};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::component::{BoxError, ComponentInfo, ComponentKind, GlobalContext};
use crate::config::{graph, Location, PipelineConfig};
use crate::event::{EventKinds, SharedStr};
use running::Running;

/// Why a graph could not be (re)built: every component that failed, each
/// at its place in the config (`file:line:col: sink "file" "out": …`).
#[derive(Debug, thiserror::Error)]
#[error("{}", self.lines().join("\n"))]
pub struct TopologyError {
    /// Each failed component with its error.
    pub failures: Vec<(ComponentInfo, BoxError)>,
    /// Where each of `failures` is in the config, in the same order.
    pub locations: Vec<Location>,
}

impl TopologyError {
    fn lines(&self) -> Vec<String> {
        self.failures
            .iter()
            .enumerate()
            .map(|(i, (info, e))| match self.locations.get(i) {
                Some(location) => format!("{location}: {info}: {}", causes::with_causes(&**e)),
                None => format!("{info}: {}", causes::with_causes(&**e)),
            })
            .collect()
    }
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
    /// Events its input buffer holds at most (transforms and sinks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buffer_max: Option<usize>,
    /// Whether the newest flame graph of this profile source can be asked
    /// for (`/flamegraph/ID`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub profiles: bool,
}

/// The running graph.
pub struct Topology {
    global: GlobalContext,
    running: Running,
    /// Component ids in config order, for `/graph`.
    order: Vec<SharedStr>,
    /// Where the API taps what leaves each component.
    taps: Taps,
}

impl Topology {
    /// An empty graph. Installs the agent's metrics recorder if it is not yet,
    /// so component metrics are never silently recorded nowhere.
    pub fn new(global: GlobalContext) -> Self {
        crate::telemetry::install();
        Topology {
            global,
            running: Running::new(),
            order: Vec::new(),
            taps: Taps::default(),
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
        let nodes = self.running.nodes();
        // Recomputed from the live configs; cheap, and only for `/graph`.
        let outputs = graph::output_kinds(nodes.values().map(|n| &n.config));
        self.order
            .iter()
            .filter_map(|id| nodes.get(id))
            .map(|n| GraphNode {
                id: n.info.id.clone(),
                kind: n.info.kind,
                type_name: n.info.type_name,
                inputs: n.config.inputs.iter().map(|i| i.id.clone()).collect(),
                accepts: graph::accepts(&n.config),
                outputs: outputs.get(&*n.info.id).copied().unwrap_or_default(),
                buffer_max: (n.info.kind != ComponentKind::Source).then_some(n.config.buffer.max_events),
                profiles: self.taps.get(&n.info.id).is_some_and(|t| t.keeps_profiles()),
            })
            .collect()
    }

    /// The tap points of the components, for the API (`/tap`).
    pub fn taps(&self) -> Taps {
        self.taps.clone()
    }

    /// Moves the running graph to `config`: builds what is new or changed,
    /// rewires, and retires what is gone. Components whose type and options
    /// are unchanged keep running untouched. If any component fails to build,
    /// nothing changes and every failure is returned.
    pub fn apply(&mut self, config: PipelineConfig) -> Result<ReloadSummary, TopologyError> {
        let plan = diff::plan(self.running.nodes().values().map(|n| &n.config), config);
        // Build everything first, so a failure leaves the running graph alone.
        let built = node::build_all(plan.to_build, &self.global)?;
        self.attach_taps(&built);
        // Wire before retiring, while the kept consumers' queues are still
        // reachable through their nodes.
        wiring::wire(self.running.nodes(), &plan.kept, &built);
        let summary = plan.summary;
        self.running.retire(summary.removed.iter().chain(&summary.rebuilt));
        self.running.update_configs(plan.kept);
        self.running.spawn(built);
        self.order = plan.order;
        self.running.forget_finished();
        Ok(summary)
    }

    /// Gives each new producer its id's tap point; sources that emit
    /// profiles keep their newest ones (the graph page's flame graphs).
    fn attach_taps(&self, built: &std::collections::HashMap<SharedStr, node::Built>) {
        for (id, b) in built {
            let Some(slot) = &b.node.slot else { continue };
            let point = self.taps.point(id);
            if let crate::registry::AnyConfig::Source(source) = &b.node.config.options {
                if source.outputs().contains(crate::event::EventKind::Profile) {
                    point.keep_profiles();
                }
            }
            slot.set_tap(point);
        }
    }

    /// Notified each time a component's task ends (a permit is kept when
    /// nobody waits), so the agent waits for [`Topology::is_finished`]
    /// without polling it: an idle agent should not wake up for nothing.
    pub fn task_ended(&self) -> Arc<Notify> {
        self.running.task_ended()
    }

    /// Whether every component has finished on its own (all sources ended
    /// and everything they produced was delivered).
    pub fn is_finished(&self) -> bool {
        self.running.is_finished()
    }

    /// Whether every sink has ended before the sources (a console sink's
    /// reader went away): the agent then stops, as nothing can be delivered.
    pub fn sinks_finished(&self) -> bool {
        self.running.sinks_finished()
    }

    /// Components that died so far (a panic, a source's error).
    pub fn failures(&self) -> Failures {
        self.running.failures()
    }

    /// Stops the sources and waits, at most `grace` or until `now` is
    /// cancelled, for every accepted event to reach the sinks. What is still
    /// held then is counted as dropped (`reason="shutdown"`) per component.
    pub async fn shutdown(self, grace: Duration, now: tokio_util::sync::CancellationToken) -> Stopped {
        self.running.shutdown(grace, now).await
    }
}
