//! Command-line interface: parsing and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sonde_core::agent::{self, ConfigSource};
use sonde_core::config;
use sonde_core::ComponentKind;

/// The default pipeline, built into the binary.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/default.hcl");
/// `sonde run`'s exit status when it ran but lost events a sink had
/// accepted (dropped for an error or by a stop that could not wait), or a
/// component died. 1 is kept for "could not start".
pub const EXIT_LOST: u8 = 3;
/// How the default pipeline is named in messages.
pub const DEFAULT_CONFIG_NAME: &str = "<built-in configs/default.hcl>";

/// sonde: an eBPF observability agent.
///
/// sonde loads eBPF programs into the kernel, turns what they see into
/// metrics, logs, profiles and spans, and sends them through a pipeline of
/// sources, transforms and sinks written in HCL.
///
/// Most commands need root (or CAP_BPF, CAP_PERFMON …) because they load
/// eBPF programs; `sonde doctor` says what this node lacks.
#[derive(Debug, Parser)]
#[command(name = "sonde", version, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Log filter: error, warn, info, debug, trace, or per module
    /// (`info,sonde_core=debug`). Overrides RUST_LOG.
    #[arg(long, global = true, default_value = "info", env = "SONDE_LOG")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until SIGINT or SIGTERM (which drain in-flight events);
    /// SIGHUP reloads the config, rebuilding only what changed.
    Run {
        /// Pipeline file. Without it, the built-in default pipeline runs
        /// (configs/default.hcl: agent metrics and eBPF sources to a
        /// Prometheus endpoint and files, no outside service needed).
        #[arg(short, long, env = "SONDE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check a pipeline without loading anything: prints every error with
    /// file:line:col, exits 1 if there is one.
    Validate {
        /// Pipeline file (the same `SONDE_CONFIG` as `sonde run` reads).
        #[arg(short, long, env = "SONDE_CONFIG")]
        config: PathBuf,
    },
    /// List component types, or show one type's options.
    Components {
        /// A type name (`demo`, `file` …) to show in full.
        #[arg(value_name = "TYPE")]
        type_name: Option<String>,
    },
    /// Print the JSON schema of a pipeline's blocks and options.
    Schema,
    /// Print the events leaving (or entering) components of a running
    /// agent, one JSON line each (the file sink's format), until --limit or
    /// Ctrl-C.
    ///
    /// The agent copies each batch to the tap without waiting: a tap that
    /// cannot keep up loses events of its own (never the pipeline's) and
    /// says how many on stderr. Past --rate events a second the tap is
    /// sampled (also said on stderr).
    ///
    /// Examples: `sonde tap gen --limit 10`;
    /// `sonde tap --inputs-of prom --kind metric`;
    /// `sonde tap --api unix:/run/sonde/api.sock k8s`.
    Tap {
        /// Component ids: sources and transforms (their outputs), or
        /// transforms and sinks with --inputs-of.
        #[arg(value_name = "COMPONENT", required = true)]
        components: Vec<String>,
        /// Show what leaves the components (the default).
        #[arg(long, conflicts_with = "inputs_of")]
        outputs_of: bool,
        /// Show what enters the components instead: the outputs of their
        /// inputs, of the kinds they accept.
        #[arg(long)]
        inputs_of: bool,
        /// Only these event kinds: metric, log, profile, span (repeat or
        /// separate with commas). Default: all.
        #[arg(long, value_delimiter = ',', value_parser = ["metric", "log", "profile", "span"])]
        kind: Vec<String>,
        /// Stop after this many events.
        #[arg(long, short = 'n')]
        limit: Option<u64>,
        /// Events a second at most; above it the agent samples (an even
        /// spread of each batch). Default 10000.
        #[arg(long)]
        rate: Option<u64>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A live terminal view of a running agent: per component events a
    /// second in and out, drops by reason, errors and buffer fill; per
    /// eBPF program runs a second and nanoseconds a run; map fill.
    ///
    /// Keys: q quits, s changes the sort column, r reverses it, / filters
    /// by id, type or program name (Enter keeps, Esc clears).
    ///
    /// Program statistics (BPF_ENABLE_STATS) are on only while top runs
    /// and go back to what they were when it quits; they and map fill need
    /// root in the agent's pid namespace (on Kubernetes: `kubectl exec`
    /// into the agent's pod, or run top on the node with hostPID).
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value = "1", value_parser = parse_interval)]
        interval: std::time::Duration,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Check whether this node can run each eBPF source, and what exactly is
    /// missing if not (kernel, BTF, tracefs, capabilities …).
    Doctor {
        /// Check the sources of this pipeline instead of every source type.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Report on this process instead: which TLS implementation it uses
        /// and whether the `protocols` source can trace it (a stripped Go
        /// binary cannot).
        #[arg(long, conflicts_with = "config")]
        pid: Option<u32>,
    },
    /// Disk buffers (`buffer { type = "disk" }`), offline.
    Buffer {
        #[command(subcommand)]
        command: BufferCommand,
    },
    /// Load every eBPF source, drive a small workload, check what each one
    /// saw; JSON lines on stdout. For `cargo xtask kernels` (a kernel matrix).
    #[command(hide = true)]
    Conformance {
        /// Check only these source types (default: every eBPF source).
        #[arg(long = "source", value_name = "TYPE")]
        sources: Vec<String>,
    },
}

/// Where `sonde tap` and `sonde top` find the agent.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// The agent API: HOST:PORT, or unix:PATH for the agent's
    /// `api_socket` (no token needed there).
    #[arg(long, default_value = sonde_core::config::DEFAULT_API, env = "SONDE_API")]
    pub api: crate::client::ApiAddress,
    /// A file holding the API's bearer token (an agent on an address other
    /// than loopback needs one). Default: the SONDE_API_TOKEN variable.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<crate::client::ApiClient> {
        Ok(crate::client::ApiClient::new(
            self.api.clone(),
            self.token_file.as_deref(),
        )?)
    }
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if (0.1..=3600.0).contains(&s) => Ok(std::time::Duration::from_secs_f64(s)),
        _ => Err(format!("`{text}`: seconds, from 0.1 to 3600")),
    }
}

/// `sonde buffer …`.
#[derive(Debug, Subcommand)]
pub enum BufferCommand {
    /// Verify a disk buffer's folder (`DATA_DIR/<sink id>`) with no agent
    /// running: every record's checksums, ids in order, what is still to be
    /// delivered. Exits 1 if anything is damaged.
    Check {
        /// The buffer's folder.
        dir: PathBuf,
    },
}

/// The levels a log filter may name.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Why a `--log-level` was refused.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// A bare word that is no level: tracing would read it as a target
    /// name and turn every other log off, errors included.
    #[error("unknown log level `{word}` in --log-level{hint}; levels: {}, or TARGET=LEVEL (`info,sonde_core=debug`)", LOG_LEVELS.join(", "))]
    UnknownLevel {
        /// The word.
        word: String,
        /// "; did you mean `warn`?" or nothing.
        hint: String,
    },
    /// Not a filter at all.
    #[error("invalid --log-level `{filter}`: {reason}")]
    Invalid {
        /// The filter given.
        filter: String,
        /// Why tracing refused it.
        reason: String,
    },
}

/// Parses a `--log-level` filter, refusing a misspelt level.
pub fn log_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, LogLevelError> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        // `TARGET=LEVEL` and `TARGET[span]` are tracing's; a bare word must be a level.
        let bare = !directive.contains(['=', '[', ':']);
        if bare && !LOG_LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            let hint = match directive.to_ascii_lowercase().as_str() {
                "warning" => Some("warn"),
                "verbose" | "all" => Some("debug"),
                "err" | "fatal" | "critical" => Some("error"),
                "none" | "quiet" => Some("off"),
                other => config::did_you_mean(other, LOG_LEVELS),
            };
            return Err(LogLevelError::UnknownLevel {
                word: directive.to_string(),
                hint: hint.map(|h| format!("; did you mean `{h}`?")).unwrap_or_default(),
            });
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter).map_err(|error| LogLevelError::Invalid {
        filter: filter.to_string(),
        reason: error.to_string(),
    })
}

/// Sets up logging to stderr.
pub fn init_logging(filter: &str) -> Result<(), LogLevelError> {
    let filter = log_filter(filter)?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, not for files and journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Options that name where a sink's output goes: a file or directory, a
/// URL it sends to.
const OUTPUT_OPTIONS: [&str; 2] = ["path", "endpoint"];

/// Logs where each sink's output goes, so that a user need not read the
/// config to find it (listeners log their own address when they bind).
/// A config with errors logs nothing here: the agent reports them.
fn log_outputs(source: &ConfigSource, registry: &sonde_core::Registry) {
    let Ok(loaded) = source.load(registry) else {
        return;
    };
    for sink in loaded
        .config
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Sink)
    {
        for option in OUTPUT_OPTIONS {
            if let Some(to) = sink.raw.get(option).and_then(serde_json::Value::as_str) {
                tracing::info!(component = %format!("sink \"{}\" \"{}\"", sink.type_name, sink.id), %to, "output");
            }
        }
    }
}

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let registry = crate::registry();
    match cli.command {
        Command::Run { config } => {
            let source = match config {
                Some(path) => ConfigSource::File(path),
                None => ConfigSource::Embedded {
                    name: DEFAULT_CONFIG_NAME,
                    text: DEFAULT_CONFIG,
                },
            };
            match &source {
                ConfigSource::File(path) => tracing::info!(config = %path.display(), "config"),
                ConfigSource::Embedded { name, .. } => tracing::info!(config = name, "config"),
            }
            log_outputs(&source, &registry);
            let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
            match runtime.block_on(agent::run(source, registry)) {
                Ok(report) if report.is_clean() => Ok(ExitCode::SUCCESS),
                // It ran, but lost events a sink had accepted, or a component died.
                Ok(_) => Ok(ExitCode::from(EXIT_LOST)),
                Err(agent::AgentError::Config(error)) => {
                    eprintln!("{error}");
                    Ok(ExitCode::FAILURE)
                }
                // Its message already holds its cause: through anyhow's
                // `{:#}` the cause would be printed twice.
                Err(error) => {
                    eprintln!("error: {error}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Validate { config } => match config::load_file(&config, &registry) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("{warning}");
                }
                println!(
                    "{}: ok ({} components)",
                    config.display(),
                    loaded.config.components.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => {
                eprintln!("{error}");
                Ok(ExitCode::FAILURE)
            }
        },
        Command::Components { type_name } => crate::components::print(&registry, type_name.as_deref()),
        Command::Schema => {
            let schema = crate::components::pipeline_schema(&registry);
            crate::components::emit(&format!("{}\n", serde_json::to_string_pretty(&schema)?))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tap {
            components,
            outputs_of: _,
            inputs_of,
            kind,
            limit,
            rate,
            api,
        } => {
            let client = api.client()?;
            let options = crate::tap::TapOptions {
                components,
                inputs: inputs_of,
                kinds: kind,
                limit,
                rate,
            };
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(crate::tap::run(client, options))
        }
        Command::Top { interval, api } => crate::top::run(api.client()?, interval),
        Command::Doctor {
            pid: Some(pid), json, ..
        } => crate::doctor::process::run(pid, json),
        Command::Doctor { config, json, .. } => crate::doctor::run(config.as_deref(), json, &registry),
        Command::Conformance { sources } => crate::conformance::run(&registry, &sources),
        Command::Buffer {
            command: BufferCommand::Check { dir },
        } => {
            let report = sonde_core::buffer::check::check(&dir)?;
            println!("{report}");
            Ok(if report.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
