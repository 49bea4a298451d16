//! The agent's life: load the config, bind the API, start the graph, reload
//! on SIGHUP, drain on SIGINT/SIGTERM (a second one stops at once), and stop
//! when every component has finished on its own; then account for every
//! event (delivered or dropped, by component and reason).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiError, ApiState, ApiToken};
use crate::component::GlobalContext;
use crate::config::{self, AgentConfig, ConfigError, Loaded};
use crate::memory;
use crate::privileges::{self, CapabilitySet, Needs};
use crate::registry::Registry;
use crate::telemetry;
use crate::topology::summary::Summary;
use crate::topology::{Failure, Stopped, Topology, TopologyError};

/// Where the pipeline config comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, re-read on SIGHUP.
    File(PathBuf),
    /// Text built into the binary (the default pipeline).
    Embedded {
        /// Name shown in diagnostics.
        name: &'static str,
        /// The HCL text.
        text: &'static str,
    },
}

impl ConfigSource {
    /// Reads and checks the config.
    pub fn load(&self, registry: &Registry) -> Result<Loaded, ConfigError> {
        match self {
            ConfigSource::File(path) => config::load_file(path, registry),
            ConfigSource::Embedded { name, text } => config::load_str(name, text, registry),
        }
    }
}

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The config has errors.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Components failed to build.
    #[error("cannot start the pipeline:\n{0}")]
    Build(#[from] TopologyError),
    /// The API could not start.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

/// How a run that started ended.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Why the drain ended.
    pub stopped: Stopped,
    /// What every component delivered and dropped.
    pub summary: Summary,
    /// Components that died.
    pub failures: Vec<Failure>,
}

impl RunReport {
    /// Whether every event a sink accepted was delivered and no component
    /// died: `sonde run` exits 0 only then.
    pub fn is_clean(&self) -> bool {
        self.summary.lost() == 0 && self.failures.is_empty()
    }
}

/// This node's name: the config's, else `NODE_NAME`, else the host name.
/// The host name off Kubernetes (no `KUBERNETES_SERVICE_HOST`) is put
/// under `host.name` instead of `k8s.node.name` ([`keys::node`]).
///
/// [`keys::node`]: crate::event::keys::node
pub fn node_name(configured: Option<&str>) -> String {
    let given = configured
        .map(str::to_string)
        .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()));
    let kubernetes = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    crate::event::keys::set_node_is_host_name(given.is_none() && !kubernetes);
    given
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

/// Runs the agent until a signal stops it or every component finishes.
pub async fn run(source: ConfigSource, registry: Registry) -> Result<RunReport, AgentError> {
    let started = std::time::Instant::now();
    let telemetry = telemetry::install();
    let loaded = source.load(&registry)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let agent = loaded.config.agent.clone();
    let global = GlobalContext {
        node_name: node_name(agent.node_name.as_deref()).into(),
    };
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signal)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(AgentError::Signal)?;

    // Every listener is bound before any component starts (sinks bind
    // theirs when built): a taken port must stop the agent before a source
    // has produced anything.
    let api_token = ApiToken::from_config(&agent).map_err(ApiError::from)?;
    let api_listener = match agent.api {
        Some(address) => Some(api::bind(address).await?),
        None => None,
    };
    let api_socket = match &agent.api_socket {
        Some(path) => Some(api::bind_unix(path)?),
        None => None,
    };

    let needs = Needs::of(&loaded.config);
    let mut topology = Topology::start(loaded.config, global)?;
    // Everything is loaded and attached: keep only what the components
    // declared (they may be rebuilt by a reload), in every thread.
    let dropped = match privileges::restrict(needs.total()) {
        Ok(done) => {
            tracing::info!(kept = %done.kept, dropped = %done.dropped, threads = done.threads, "capabilities dropped");
            done.dropped
        }
        Err(error) => {
            tracing::warn!(%error, "cannot drop capabilities, running with those it has");
            CapabilitySet::EMPTY
        }
    };
    let graph = Arc::new(ArcSwap::from_pointee(topology.graph()));
    let api_stop = CancellationToken::new();
    let api_state = ApiState {
        graph: graph.clone(),
        telemetry,
        failures: topology.failures(),
        taps: topology.taps(),
        flamegraph: registry.flamegraph(),
        started,
    };
    if let Some(listener) = api_listener {
        api::serve(listener, api_state.clone(), api_token, api_stop.clone())?;
    }
    if let (Some(listener), Some(path)) = (api_socket, &agent.api_socket) {
        api::serve_unix(listener, path, api_state, api_stop.clone());
    }
    tracing::info!(components = topology.graph().len(), "pipeline running");
    memory::release_free_memory();

    let task_ended = topology.task_ended();
    let mut trim = tokio::time::interval_at(tokio::time::Instant::now() + memory::TRIM_EVERY, memory::TRIM_EVERY);
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: draining (a second signal stops at once)"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: draining (a second signal stops at once)"); break; }
            _ = sighup.recv() => {
                reload(&source, &registry, &mut topology, &agent, dropped);
                graph.store(Arc::new(topology.graph()));
                memory::release_free_memory();
            }
            _ = trim.tick() => memory::release_free_memory(),
            _ = task_ended.notified() => {
                if topology.is_finished() {
                    tracing::info!("every component finished");
                    break;
                }
                if topology.sinks_finished() {
                    tracing::info!("every sink has stopped: stopping the sources");
                    break;
                }
            }
        }
    }
    let failures = topology.failures();
    let now = CancellationToken::new();
    let shutdown = topology.shutdown(agent.shutdown_grace, now.clone());
    tokio::pin!(shutdown);
    let stopped = loop {
        tokio::select! {
            stopped = &mut shutdown => break stopped,
            _ = sigterm.recv(), if !now.is_cancelled() => {
                tracing::warn!("SIGTERM again: stopping now, what is not yet delivered is dropped and counted");
                now.cancel();
            }
            _ = sigint.recv(), if !now.is_cancelled() => {
                tracing::warn!("SIGINT again: stopping now, what is not yet delivered is dropped and counted");
                now.cancel();
            }
        }
    };
    api_stop.cancel();
    if let Some(path) = &agent.api_socket {
        let _ = std::fs::remove_file(path);
    }
    if stopped == Stopped::GraceOver {
        tracing::error!(grace = ?agent.shutdown_grace, "shutdown grace period over before every event was delivered");
    }
    let report = RunReport {
        stopped,
        summary: Summary::from_metrics(&telemetry.snapshot()),
        failures: failures.list(),
    };
    report.summary.log();
    for failure in &report.failures {
        tracing::error!(component = %failure.component, error = %failure.error, "component failed");
    }
    let dropped_total = report.summary.dropped_total();
    if dropped_total == 0 && report.failures.is_empty() {
        tracing::info!("stopped, nothing lost");
    } else {
        tracing::error!(
            dropped = dropped_total,
            lost = report.summary.lost(),
            failed_components = report.failures.len(),
            "stopped, events dropped or components failed (see above)"
        );
    }
    Ok(report)
}

/// Re-reads the config and moves the graph to it; on any error the running
/// graph stays as it is and every error is logged.
fn reload(
    source: &ConfigSource,
    registry: &Registry,
    topology: &mut Topology,
    agent: &AgentConfig,
    dropped: CapabilitySet,
) {
    tracing::info!("SIGHUP: reloading config");
    let loaded = match source.load(registry) {
        Ok(loaded) => loaded,
        Err(error) => {
            for diagnostic in &error.diagnostics {
                tracing::error!("{diagnostic}");
            }
            tracing::error!("config has errors, keeping the running pipeline");
            return;
        }
    };
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    // What was given up cannot be taken back: such a config needs a restart.
    let needed = privileges::for_kernel(Needs::of(&loaded.config).total(), privileges::last_cap());
    let missing = needed.intersection(dropped);
    if !missing.is_empty() {
        tracing::error!(%missing, "the new config needs capabilities dropped at start; restart the agent to apply it");
        return;
    }
    if &loaded.config.agent != agent {
        tracing::warn!("the agent block changed: it takes effect at the next restart (reload applies components only)");
    }
    match topology.apply(loaded.config) {
        Ok(summary) => tracing::info!(
            added = ?summary.added, rebuilt = ?summary.rebuilt, removed = ?summary.removed, kept = summary.kept.len(),
            "config reloaded"
        ),
        Err(error) => {
            for (info, e) in &error.failures {
                tracing::error!(component = %info, error = %e, "cannot build");
            }
            tracing::error!("reload failed, keeping the running pipeline");
        }
    }
}
