//! Reads a pipeline file: HCL → blocks → typed component configs, collecting
//! every mistake in one pass.

use std::ops::Range;
use std::path::Path;

use hcl::eval::Evaluate;
use hcl_edit::structure::{Block, BlockLabel, Body, Structure};
use hcl_edit::Span;
use schemars::SchemaGenerator;

use super::diagnostic::{ConfigError, Diagnostic, DiagnosticKind, Location, SourceMap};
use super::eval::{self, join, SpanIndex};
use super::graph;
use super::model::{AgentConfig, CommonOptions, ComponentConfig, InputRef, PipelineConfig};
use super::names;
use crate::component::ComponentKind;
use crate::registry::{ParseError, Registry};

/// A config that can run, and what is worth a warning in it.
#[derive(Debug)]
pub struct Loaded {
    /// The pipeline.
    pub config: PipelineConfig,
    /// Warnings (unconsumed sources, kinds a sink will drop).
    pub warnings: Vec<Diagnostic>,
}

/// Top-level block names.
const TOP_LEVEL: [&str; 4] = ["agent", "source", "transform", "sink"];
/// Options the core reads from transforms and sinks.
const COMMON_OPTIONS: [&str; 4] = ["inputs", "buffer", "request", "batch"];

/// Loads and checks the pipeline in `path`.
pub fn load_file(path: &Path, registry: &Registry) -> Result<Loaded, ConfigError> {
    let bytes = std::fs::read(path).map_err(|error| ConfigError {
        diagnostics: vec![Diagnostic::error(
            DiagnosticKind::Io,
            None,
            format!("cannot read config file {}: {error}", path.display()),
        )],
    })?;
    let text = utf8(path, &bytes)?;
    load_str(path, text, registry)
}

/// The file's text, or an error at the first byte that is not UTF-8.
fn utf8<'b>(path: &Path, bytes: &'b [u8]) -> Result<&'b str, ConfigError> {
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = error.valid_up_to();
        // Everything before the bad byte is text: locate it there.
        let before = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let location = SourceMap::new(path, before).locate(valid);
        ConfigError {
            diagnostics: vec![Diagnostic::error(
                DiagnosticKind::Syntax,
                Some(location),
                format!(
                    "byte 0x{:02x} is not UTF-8: a config file must be UTF-8 text",
                    bytes[valid]
                ),
            )
            .with_help("convert it, e.g. `iconv -f LATIN1 -t UTF-8`")],
        }
    })
}

/// Loads and checks pipeline text; `file` names it in diagnostics.
pub fn load_str(file: impl AsRef<Path>, text: &str, registry: &Registry) -> Result<Loaded, ConfigError> {
    // Editors on Windows start UTF-8 files with a byte order mark, which
    // HCL does not allow: it is not part of the text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let map = SourceMap::new(file.as_ref(), text);
    let body = match hcl_edit::parser::parse_body(text) {
        Ok(body) => body,
        Err(error) => {
            let location = map.at(error.location().line(), error.location().column());
            return Err(ConfigError {
                diagnostics: vec![Diagnostic::error(
                    DiagnosticKind::Syntax,
                    Some(location),
                    format!("HCL syntax: {}", error.message()),
                )],
            });
        }
    };
    let mut loader = Loader {
        registry,
        map: &map,
        ctx: eval::context(),
        diagnostics: Vec::new(),
        failed: graph::Failed::default(),
    };
    let config = loader.pipeline(&body);
    let mut diagnostics = loader.diagnostics;
    if config.components.is_empty() && loader.failed.is_empty() && !diagnostics.iter().any(Diagnostic::is_error) {
        diagnostics.push(
            Diagnostic::error(
                DiagnosticKind::NoComponents,
                Some(map.at(1, 1)),
                "the pipeline has no components: nothing would run",
            )
            .with_help("add a source and a sink, e.g. `sonde run --config configs/examples/demo.hcl`"),
        );
    }
    diagnostics.extend(graph::check(&config, registry, &loader.failed));
    diagnostics.sort_by_key(|d| d.location.as_ref().map(|l| (l.line, l.column)));
    // One line per mistake, however many checks found it.
    let mut seen = std::collections::HashSet::new();
    diagnostics.retain(|d| seen.insert(d.to_string()));
    if diagnostics.iter().any(Diagnostic::is_error) {
        Err(ConfigError { diagnostics })
    } else {
        Ok(Loaded {
            config,
            warnings: diagnostics,
        })
    }
}

struct Loader<'a> {
    registry: &'a Registry,
    map: &'a SourceMap,
    ctx: hcl::eval::Context<'static>,
    diagnostics: Vec<Diagnostic>,
    /// Blocks already reported as wrong, so that the graph checks do not
    /// report their absence again.
    failed: graph::Failed,
}

impl Loader<'_> {
    fn error(
        &mut self,
        kind: DiagnosticKind,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let location = self.map.locate_span(span);
        self.diagnostics.push(Diagnostic::error(kind, Some(location), message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn pipeline(&mut self, body: &Body) -> PipelineConfig {
        let mut config = PipelineConfig::default();
        let mut agent_seen = false;
        for structure in body.iter() {
            let block = match structure {
                Structure::Block(block) => block,
                Structure::Attribute(attribute) => {
                    let key = attribute.key.as_str().to_string();
                    self.error(
                        DiagnosticKind::UnexpectedItem,
                        attribute.span(),
                        format!("unexpected option `{key}` at top level"),
                    )
                    .help = Some("the top level holds only `agent`, `source`, `transform` and `sink` blocks".into());
                    continue;
                }
            };
            let ident = block.ident.as_str();
            let kind = match ident {
                "agent" => {
                    if agent_seen {
                        self.error(
                            DiagnosticKind::UnexpectedItem,
                            block.span(),
                            "the `agent` block is given twice",
                        );
                    }
                    agent_seen = true;
                    if let Some(agent) = self.agent(block) {
                        config.agent = agent;
                    }
                    continue;
                }
                "source" => ComponentKind::Source,
                "transform" => ComponentKind::Transform,
                "sink" => ComponentKind::Sink,
                other => {
                    let diagnostic = Diagnostic::error(
                        DiagnosticKind::UnexpectedItem,
                        Some(self.map.locate_span(block.span())),
                        format!("unknown block `{other}`"),
                    )
                    .suggest(other, TOP_LEVEL);
                    self.diagnostics.push(diagnostic);
                    continue;
                }
            };
            match self.component(kind, block) {
                Some(component) => config.components.push(component),
                None => self.failed(block),
            }
        }
        config
    }

    /// Remembers a component block that was reported as wrong: its id, and
    /// the inputs it names when they can be read.
    fn failed(&mut self, block: &Block) {
        let Some(id) = block.labels.get(1).map(label_text) else {
            return;
        };
        let inputs = block
            .body
            .get_attribute("inputs")
            .and_then(|attribute| hcl::Expression::from(attribute.value.clone()).evaluate(&self.ctx).ok())
            .and_then(|value| match value {
                hcl::Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
                _ => None,
            });
        self.failed.add(id, inputs);
    }

    fn agent(&mut self, block: &Block) -> Option<AgentConfig> {
        if !block.labels.is_empty() {
            self.error(
                DiagnosticKind::UnexpectedItem,
                block.span(),
                "the `agent` block takes no labels",
            );
        }
        let mut spans = SpanIndex::new();
        let object = eval::body_to_json(&block.body, "", &self.ctx, self.map, &mut spans, &mut self.diagnostics);
        let result: Result<AgentConfig, ParseError> =
            serde_path_to_error::deserialize(serde_json::Value::Object(object));
        match result {
            Ok(agent) => {
                let problems = agent.problems();
                for (option, message, help) in &problems {
                    let location = self.map.locate_span(
                        spans
                            .value(option)
                            .or_else(|| spans.get(option))
                            .cloned()
                            .or(block.span()),
                    );
                    self.diagnostics.push(
                        Diagnostic::error(DiagnosticKind::InvalidValue, Some(location), message.clone())
                            .with_help(*help),
                    );
                }
                problems.is_empty().then_some(agent)
            }
            Err(error) => {
                let schema = SchemaGenerator::default().root_schema_for::<AgentConfig>();
                let diagnostic = option_error(
                    &error,
                    &spans,
                    self.map,
                    block.span(),
                    "the agent block",
                    schema.as_value(),
                );
                self.diagnostics.extend(diagnostic);
                None
            }
        }
    }

    fn component(&mut self, kind: ComponentKind, block: &Block) -> Option<ComponentConfig> {
        let labels: Vec<&str> = block.labels.iter().map(label_text).collect();
        let [type_name, id] = labels[..] else {
            self.error(
                DiagnosticKind::UnexpectedItem,
                block.span(),
                format!("a {kind} block takes two labels, a type and an id: {kind} \"TYPE\" \"ID\" {{ … }}"),
            );
            return None;
        };
        let type_span = block.labels[0].span().or(block.span());
        let Some(component_type) = self.registry.get(kind, type_name) else {
            let known: Vec<&str> = self.registry.names(kind).collect();
            let diagnostic = Diagnostic::error(
                DiagnosticKind::UnknownType,
                Some(self.map.locate_span(type_span)),
                format!("unknown {kind} type `{type_name}`"),
            );
            let diagnostic = match super::diagnostic::did_you_mean(type_name, known.iter().copied()) {
                Some(best) => diagnostic.with_help(format!("did you mean `{best}`?")),
                None => diagnostic.with_help(format!("{kind} types: {}", known.join(", "))),
            };
            self.diagnostics.push(diagnostic);
            return None;
        };
        let what = format!("{kind} \"{type_name}\"");

        let mut spans = SpanIndex::new();
        let mut object = eval::body_to_json(&block.body, "", &self.ctx, self.map, &mut spans, &mut self.diagnostics);
        let raw = serde_json::Value::Object(object.clone());

        let mut common = serde_json::Map::new();
        for key in COMMON_OPTIONS {
            if let Some(value) = object.remove(key) {
                common.insert(key.to_string(), value);
            }
        }
        let mut ok = true;
        let common = match kind {
            ComponentKind::Source => {
                if let Some(key) = common.keys().next() {
                    let span = spans.get(key.as_str()).cloned();
                    self.error(
                        DiagnosticKind::UnknownOption,
                        span,
                        format!("sources take no `{key}` option"),
                    );
                    ok = false;
                }
                None
            }
            _ => {
                if !common.contains_key("inputs") {
                    self.error(
                        DiagnosticKind::NoInputs,
                        block.span(),
                        format!("{what} \"{id}\" has no `inputs`"),
                    )
                    .help = Some("name the components it consumes: inputs = [\"ID\", …]".into());
                    return None;
                }
                if kind == ComponentKind::Transform {
                    for key in ["buffer", "request", "batch"] {
                        if common.contains_key(key) {
                            let span = spans.get(key).cloned();
                            self.error(DiagnosticKind::UnknownOption, span, format!("`{key}` is a sink option"));
                            ok = false;
                        }
                    }
                }
                let result: Result<CommonOptions, ParseError> =
                    serde_path_to_error::deserialize(serde_json::Value::Object(common));
                match result {
                    Ok(common) => Some(common),
                    Err(error) => {
                        let schema = SchemaGenerator::default().root_schema_for::<CommonOptions>();
                        let diagnostic = option_error(&error, &spans, self.map, block.span(), &what, schema.as_value());
                        self.diagnostics.extend(diagnostic);
                        return None;
                    }
                }
            }
        };

        let options = match component_type.parse(serde_json::Value::Object(std::mem::take(&mut object))) {
            Ok(options) => options,
            Err(error) => {
                let schema = component_type.schema(&mut SchemaGenerator::default());
                let diagnostic = option_error(&error, &spans, self.map, block.span(), &what, schema.as_value());
                self.diagnostics.extend(diagnostic);
                return None;
            }
        };
        if let Err(invalid) = options.validate() {
            for invalid in invalid {
                let (span, message) = match spans.value(invalid.option) {
                    Some(span) => (
                        Some(span.clone()),
                        format!("invalid value for `{}` in {what}: {}", invalid.option, invalid.message),
                    ),
                    None => (
                        lookup(&spans, invalid.option).or(block.span()),
                        format!("`{}` in {what}: {}", invalid.option, invalid.message),
                    ),
                };
                self.error(DiagnosticKind::InvalidValue, span, message);
            }
            return None;
        }
        if !ok {
            return None;
        }
        let inputs = common.as_ref().map_or_else(Vec::new, |c| {
            c.inputs
                .iter()
                .enumerate()
                .map(|(i, input)| InputRef {
                    id: input.clone().into(),
                    location: self.map.locate_span(spans.get(&format!("inputs[{i}]")).cloned()),
                })
                .collect()
        });
        let (buffer, request, batch) = common.map_or_else(Default::default, |c| {
            (c.buffer.unwrap_or_default(), c.request.unwrap_or_default(), c.batch)
        });
        Some(ComponentConfig {
            kind,
            id: id.to_string().into(),
            type_name: component_type.name,
            inputs,
            buffer,
            request,
            batch,
            options,
            raw,
            location: self
                .map
                .locate_span(block.labels.get(1).and_then(|l| l.span()).or(block.span())),
        })
    }
}

fn label_text(label: &BlockLabel) -> &str {
    match label {
        BlockLabel::Ident(ident) => ident.as_str(),
        BlockLabel::String(text) => text.as_str(),
    }
}

/// Turns a serde error at an option path into a located diagnostic.
/// `None` when the error only repeats one already reported.
fn option_error(
    error: &ParseError,
    spans: &SpanIndex,
    map: &SourceMap,
    block_span: Option<Range<usize>>,
    what: &str,
    schema: &serde_json::Value,
) -> Option<Diagnostic> {
    let path = match error.path().to_string() {
        p if p == "." => String::new(),
        p => p,
    };
    let message = error.inner().to_string();
    let locate = |path: &str| -> Location { map.locate_span(lookup(spans, path).or(block_span.clone())) };
    // A bad value is shown where the value is written.
    let locate_value = |path: &str| -> Location {
        map.locate_span(
            spans
                .value(path)
                .cloned()
                .or_else(|| lookup(spans, path))
                .or(block_span.clone()),
        )
    };

    if let Some(field) = backticked_after(&message, "unknown field ") {
        // The path already ends at the unknown field.
        let key = if path == field || path.ends_with(&format!(".{field}")) {
            path.clone()
        } else {
            join(&path, field)
        };
        let parent = key.strip_suffix(field).unwrap_or("").trim_end_matches('.');
        let expected = names::options(schema, parent);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        let mut diagnostic = Diagnostic::error(
            DiagnosticKind::UnknownOption,
            Some(locate(&key)),
            format!("unknown option `{key}` in {what}"),
        );
        diagnostic = match super::diagnostic::did_you_mean(field, expected.iter().copied()) {
            Some(best) => diagnostic.with_help(format!("did you mean `{best}`?")),
            None if expected.is_empty() => diagnostic.with_help("this block takes no options"),
            None => diagnostic.with_help(format!("valid options: {}", expected.join(", "))),
        };
        return Some(diagnostic);
    }
    if let Some(field) = backticked_after(&message, "missing field ") {
        let key = join(&path, field);
        if spans.contains_key(&key) {
            // Written, but its expression failed to evaluate: already reported.
            return None;
        }
        return Some(Diagnostic::error(
            DiagnosticKind::MissingOption,
            Some(locate(&path)),
            format!("{what} needs option `{key}`"),
        ));
    }
    if let Some(variant) = backticked_after(&message, "unknown variant ") {
        let expected = names::variants(schema, &path);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        let diagnostic = Diagnostic::error(
            DiagnosticKind::InvalidValue,
            Some(locate_value(&path)),
            format!("invalid value `{variant}` for `{path}` in {what}"),
        );
        return Some(
            match super::diagnostic::did_you_mean(variant, expected.iter().copied()) {
                Some(best) => diagnostic.with_help(format!("did you mean `{best}`?")),
                None => diagnostic.with_help(format!("valid values: {}", expected.join(", "))),
            },
        );
    }
    let diagnostic = Diagnostic::error(
        DiagnosticKind::InvalidValue,
        Some(locate_value(&path)),
        format!("invalid value for `{path}` in {what}: {message}"),
    );
    // `env()` gives strings: a string that would do as a number or a bool
    // gets the way to convert it.
    let string = message
        .strip_prefix("invalid type: string \"")
        .and_then(|rest| rest.split_once("\", expected "));
    Some(match string {
        Some((text, expected)) if expected != "a string" && text.trim().parse::<f64>().is_ok() => {
            diagnostic.with_help(format!(
                "`{text}` is a string here; write it without quotes, or convert it: tonumber(env(\"X\", \"{text}\"))"
            ))
        }
        Some((text @ ("true" | "false"), "a boolean")) => diagnostic.with_help(format!(
            "`{text}` is a string here; write it without quotes, or convert it: tobool(env(\"X\", \"{text}\"))"
        )),
        _ => diagnostic,
    })
}

/// The span of `path`, or of its nearest indexed parent.
fn lookup(spans: &SpanIndex, path: &str) -> Option<Range<usize>> {
    let mut path = path;
    loop {
        if let Some(span) = spans.get(path) {
            return Some(span.clone());
        }
        let cut = path.rfind(['.', '['])?;
        path = &path[..cut];
    }
}

/// `name` in "…`prefix``name`…".
fn backticked_after<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_serde_messages() {
        let m = "unknown field `intervall`, expected one of `interval`, `rate`";
        assert_eq!(backticked_after(m, "unknown field "), Some("intervall"));
        assert_eq!(backticked_after(m, "missing field "), None);
    }
}
