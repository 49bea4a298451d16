//! The registry of component types, keyed by kind and type name.
//!
//! Each component crate exposes `pub fn register(registry: &mut Registry)`
//! with one line per type:
//!
//! ```ignore
//! registry.source::<DemoSourceConfig>();
//! ```
//!
//! The type's name comes from its config type ([`SourceType::NAME`] and
//! the transform and sink equivalents), and so does everything else the
//! agent needs to know of it: how to deserialize its config (with the exact
//! path of a bad option, for `file:line:col` errors), its documentation
//! (the JSON schema of the config struct) and, for an eBPF source, its
//! kernel side ([`EbpfSide`]), from which `sonde doctor`, the kernel matrix
//! and the benchmarks find every eBPF source.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::component::{BoxError, ComponentKind, SinkConfig, SourceConfig, TransformConfig};

/// A source type: its config struct, named.
pub trait SourceType: SourceConfig + DeserializeOwned + JsonSchema {
    /// The type name used in configs (`source "NAME" "id" { … }`).
    const NAME: &'static str;
    /// The kernel side, for a source that runs eBPF programs.
    const EBPF: Option<EbpfSide> = None;
}

/// A transform type: its config struct, named.
pub trait TransformType: TransformConfig + DeserializeOwned + JsonSchema {
    /// The type name used in configs.
    const NAME: &'static str;
}

/// A sink type: its config struct, named.
pub trait SinkType: SinkConfig + DeserializeOwned + JsonSchema {
    /// The type name used in configs.
    const NAME: &'static str;
}

/// The kernel side of an eBPF source: what `sonde doctor`, the kernel
/// matrix (`sonde conformance`) and the benchmarks' "all sources" mode need
/// to know of it. `core` knows nothing of eBPF, so errors are boxed: the
/// trial's is the eBPF crate's `LoadError`, the check's its `CheckError`
/// (their users downcast).
#[derive(Clone, Copy, Debug)]
pub struct EbpfSide {
    /// The oldest kernel it supports.
    pub min_kernel: (u32, u32),
    /// What it attaches to, for messages (`tracepoint block:block_rq_issue`).
    pub attach_points: &'static [&'static str],
    /// Loads and attaches its programs with default options, then detaches.
    pub trial: fn() -> Result<(), BoxError>,
    /// Its conformance check: loads it, drives a workload of its own and
    /// compares what it saw with an independent count; returns that
    /// evidence in one line. The body of its real-kernel test too.
    pub conformance: fn() -> Result<String, BoxError>,
}

/// A deserialized component config of any kind.
#[derive(Debug)]
pub enum AnyConfig {
    /// A source's config.
    Source(Box<dyn SourceConfig>),
    /// A transform's config.
    Transform(Box<dyn TransformConfig>),
    /// A sink's config.
    Sink(Box<dyn SinkConfig>),
}

impl AnyConfig {
    /// Runs the type's [`validate`](SourceConfig::validate).
    pub fn validate(&self) -> Result<(), Vec<crate::component::Invalid>> {
        match self {
            AnyConfig::Source(c) => c.validate(),
            AnyConfig::Transform(c) => c.validate(),
            AnyConfig::Sink(c) => c.validate(),
        }
    }
}

/// Why a component's options did not deserialize, with the path of the bad option.
pub type ParseError = serde_path_to_error::Error<serde_json::Error>;

type ParseFn = fn(serde_json::Value) -> Result<AnyConfig, ParseError>;
type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One registered component type.
#[derive(Clone, Copy)]
pub struct ComponentType {
    /// Source, transform or sink.
    pub kind: ComponentKind,
    /// The type name used in configs.
    pub name: &'static str,
    /// The kernel side of an eBPF source.
    pub ebpf: Option<EbpfSide>,
    parse: ParseFn,
    schema: SchemaFn,
}

impl ComponentType {
    /// Deserializes the type's options (everything but the common ones).
    pub fn parse(&self, options: serde_json::Value) -> Result<AnyConfig, ParseError> {
        (self.parse)(options)
    }

    /// The JSON schema of the type's options.
    pub fn schema(&self, generator: &mut SchemaGenerator) -> Schema {
        (self.schema)(generator)
    }

    /// The first sentence of the config struct's doc comment.
    pub fn summary(&self) -> String {
        let schema = self.schema(&mut SchemaGenerator::default());
        let description = schema.get("description").and_then(|d| d.as_str()).unwrap_or("");
        let paragraph = description.split("\n\n").next().unwrap_or("");
        let joined = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        match joined.find(". ") {
            Some(end) => joined[..=end].to_string(),
            None => joined,
        }
    }
}

impl std::fmt::Debug for ComponentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} \"{}\"", self.kind, self.name)
    }
}

/// Draws a flame graph (SVG) of some profiles: given by the sinks crate,
/// so that the agent API can show one without the core knowing how.
pub type FlameGraphFn = fn(&[&crate::event::Profile]) -> std::io::Result<Vec<u8>>;

/// Every component type the binary knows.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    types: BTreeMap<(ComponentKind, &'static str), ComponentType>,
    flamegraph: Option<FlameGraphFn>,
}

fn parse_with<T: DeserializeOwned>(options: serde_json::Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(options)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the agent API draws flame graphs of profile sources.
    pub fn set_flamegraph(&mut self, draw: FlameGraphFn) {
        self.flamegraph = Some(draw);
    }

    /// How the agent API draws flame graphs, if a crate said.
    pub fn flamegraph(&self) -> Option<FlameGraphFn> {
        self.flamegraph
    }

    /// Registers source type `C`.
    pub fn source<C: SourceType>(&mut self) -> &mut Self {
        self.insert(ComponentType {
            kind: ComponentKind::Source,
            name: C::NAME,
            ebpf: C::EBPF,
            parse: |v| parse_with::<C>(v).map(|c| AnyConfig::Source(Box::new(c))),
            schema: |g| g.root_schema_for::<C>(),
        })
    }

    /// Registers transform type `C`.
    pub fn transform<C: TransformType>(&mut self) -> &mut Self {
        self.insert(ComponentType {
            kind: ComponentKind::Transform,
            name: C::NAME,
            ebpf: None,
            parse: |v| parse_with::<C>(v).map(|c| AnyConfig::Transform(Box::new(c))),
            schema: |g| g.root_schema_for::<C>(),
        })
    }

    /// Registers sink type `C`.
    pub fn sink<C: SinkType>(&mut self) -> &mut Self {
        self.insert(ComponentType {
            kind: ComponentKind::Sink,
            name: C::NAME,
            ebpf: None,
            parse: |v| parse_with::<C>(v).map(|c| AnyConfig::Sink(Box::new(c))),
            schema: |g| g.root_schema_for::<C>(),
        })
    }

    fn insert(&mut self, ty: ComponentType) -> &mut Self {
        let previous = self.types.insert((ty.kind, ty.name), ty);
        assert!(previous.is_none(), "component type {ty:?} registered twice");
        self
    }

    /// The type `name` of `kind`.
    pub fn get(&self, kind: ComponentKind, name: &str) -> Option<&ComponentType> {
        self.types
            .range((kind, "")..)
            .take_while(|((k, _), _)| *k == kind)
            .find(|((_, n), _)| *n == name)
            .map(|(_, ty)| ty)
    }

    /// Type names of `kind`, sorted.
    pub fn names(&self, kind: ComponentKind) -> impl Iterator<Item = &'static str> + '_ {
        self.types.keys().filter(move |(k, _)| *k == kind).map(|(_, n)| *n)
    }

    /// Every type, sorted by kind then name.
    pub fn iter(&self) -> impl Iterator<Item = &ComponentType> {
        self.types.values()
    }

    /// Every eBPF source type with its kernel side, sorted by name.
    pub fn ebpf_sources(&self) -> impl Iterator<Item = (&'static str, &EbpfSide)> {
        self.types.values().filter_map(|t| Some((t.name, t.ebpf.as_ref()?)))
    }
}
