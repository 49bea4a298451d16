//! The registry of component types, keyed by kind and type name.
//!
//! Each component crate exposes `pub fn register(registry: &mut Registry)`
//! with one line per type:
//!
//! ```ignore
//! registry.source::<DemoSourceConfig>("demo");
//! ```
//!
//! The registry knows how to deserialize the type's config (with the exact
//! path of a bad option, for `file:line:col` errors) and how to print its
//! documentation from the JSON schema of the config struct.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;

use crate::component::{ComponentKind, SinkConfig, SourceConfig, TransformConfig};

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

/// Every component type the binary knows.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    types: BTreeMap<(ComponentKind, &'static str), ComponentType>,
}

fn parse_with<T: DeserializeOwned>(options: serde_json::Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(options)
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a source type.
    pub fn source<C: SourceConfig + DeserializeOwned + JsonSchema>(&mut self, name: &'static str) -> &mut Self {
        self.insert(ComponentType {
            kind: ComponentKind::Source,
            name,
            parse: |v| parse_with::<C>(v).map(|c| AnyConfig::Source(Box::new(c))),
            schema: |g| g.root_schema_for::<C>(),
        })
    }

    /// Registers a transform type.
    pub fn transform<C: TransformConfig + DeserializeOwned + JsonSchema>(&mut self, name: &'static str) -> &mut Self {
        self.insert(ComponentType {
            kind: ComponentKind::Transform,
            name,
            parse: |v| parse_with::<C>(v).map(|c| AnyConfig::Transform(Box::new(c))),
            schema: |g| g.root_schema_for::<C>(),
        })
    }

    /// Registers a sink type.
    pub fn sink<C: SinkConfig + DeserializeOwned + JsonSchema>(&mut self, name: &'static str) -> &mut Self {
        self.insert(ComponentType {
            kind: ComponentKind::Sink,
            name,
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
}
