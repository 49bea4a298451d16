//! Evaluates HCL bodies into JSON, remembering where each option was written.
//!
//! hcl-edit keeps byte spans, hcl-rs evaluates expressions (`env("X")`,
//! `"${env("HOME")}/x"`, arithmetic); the result is a JSON object per block
//! that serde deserializes into the component's config struct, plus a map
//! from option path (`buffer.max_events`, `inputs[1]`) to span so that a
//! serde error can be pointed at its line and column.

use std::collections::HashMap;
use std::ops::Range;

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl_edit::expr::Expression;
use hcl_edit::structure::Body;
use hcl_edit::Span;

use super::diagnostic::{Diagnostic, DiagnosticKind, SourceMap};

/// Option path → byte span of where it was written (from its name), and
/// of its value.
#[derive(Debug, Default)]
pub struct SpanIndex {
    options: HashMap<String, Range<usize>>,
    values: HashMap<String, Range<usize>>,
}

impl SpanIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where option `path` was written.
    pub fn get(&self, path: &str) -> Option<&Range<usize>> {
        self.options.get(path)
    }

    /// Whether option `path` was written.
    pub fn contains_key(&self, path: &str) -> bool {
        self.options.contains_key(path)
    }

    /// Where the value of option `path` was written; its name's span for a block.
    pub fn value(&self, path: &str) -> Option<&Range<usize>> {
        self.values.get(path).or_else(|| self.options.get(path))
    }

    fn insert(&mut self, path: String, span: Range<usize>) {
        self.options.insert(path, span);
    }

    fn insert_value(&mut self, path: String, span: Option<Range<usize>>) {
        if let Some(span) = span {
            self.values.insert(path, span);
        }
    }
}

/// The evaluation context: the functions configs may call.
pub fn context() -> Context<'static> {
    let mut ctx = Context::new();
    ctx.declare_func(
        "env",
        FuncDef::builder()
            .param(ParamType::String)
            .variadic_param(ParamType::String)
            .build(env_function),
    );
    ctx.declare_func(
        "tonumber",
        FuncDef::builder()
            .param(ParamType::OneOf(vec![ParamType::Number, ParamType::String]))
            .build(tonumber_function),
    );
    ctx.declare_func(
        "tobool",
        FuncDef::builder()
            .param(ParamType::OneOf(vec![ParamType::Bool, ParamType::String]))
            .build(tobool_function),
    );
    ctx
}

/// `tonumber("5")` is 5, so that a number can come from `env()`, which
/// gives strings: `count = tonumber(env("COUNT", "5"))`.
fn tonumber_function(args: FuncArgs) -> Result<hcl::Value, String> {
    let text = match &args[0] {
        hcl::Value::String(text) => text.trim(),
        number => return Ok(number.clone()),
    };
    let number = if let Ok(n) = text.parse::<u64>() {
        Some(hcl::Number::from(n))
    } else if let Ok(n) = text.parse::<i64>() {
        Some(hcl::Number::from(n))
    } else {
        text.parse::<f64>().ok().and_then(hcl::Number::from_f64)
    };
    number
        .map(hcl::Value::Number)
        .ok_or_else(|| format!("tonumber: `{text}` is not a number"))
}

/// `tobool("true")` is true: for `env()` values, as [`tonumber_function`].
fn tobool_function(args: FuncArgs) -> Result<hcl::Value, String> {
    match &args[0] {
        hcl::Value::String(text) => match text.trim() {
            "true" => Ok(hcl::Value::Bool(true)),
            "false" => Ok(hcl::Value::Bool(false)),
            other => Err(format!("tobool: `{other}` is not `true` or `false`")),
        },
        value => Ok(value.clone()),
    }
}

/// `env("NAME")` is the variable's value and fails when it is unset;
/// `env("NAME", "fallback")` gives the fallback instead.
fn env_function(args: FuncArgs) -> Result<hcl::Value, String> {
    let name = args[0].as_str().unwrap_or_default();
    match std::env::var(name) {
        Ok(value) => Ok(hcl::Value::from(value)),
        Err(_) => match args.variadic_args().next() {
            Some(fallback) => Ok(fallback.clone()),
            None => Err(format!(
                "environment variable `{name}` is not set (give a fallback: env(\"{name}\", \"value\"))"
            )),
        },
    }
}

/// Joins an option path the way serde_path_to_error prints paths.
pub fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Evaluates `body` into a JSON object. Attributes become keys; a nested
/// block becomes an object under its name, or an array of objects when the
/// name repeats. Errors are pushed to `diagnostics`; the failing option is
/// left out so that the rest can still be checked.
pub fn body_to_json(
    body: &Body,
    prefix: &str,
    ctx: &Context,
    map: &SourceMap,
    spans: &mut SpanIndex,
    diagnostics: &mut Vec<Diagnostic>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut object = serde_json::Map::new();
    for attribute in body.attributes() {
        let key = attribute.key.as_str();
        let path = join(prefix, key);
        if let Some(span) = attribute.span() {
            spans.insert(path.clone(), span);
        }
        spans.insert_value(path.clone(), attribute.value.span());
        index_expression(&attribute.value, &path, spans);
        if object.contains_key(key) {
            diagnostics.push(Diagnostic::error(
                DiagnosticKind::UnexpectedItem,
                Some(map.locate_span(attribute.span())),
                format!("option `{key}` is set twice"),
            ));
            continue;
        }
        let expression = hcl::Expression::from(attribute.value.clone());
        match expression.evaluate(ctx) {
            Ok(value) => {
                let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
                object.insert(key.to_string(), json);
            }
            Err(errors) => diagnostics.push(Diagnostic::error(
                DiagnosticKind::Evaluation,
                Some(map.locate_span(attribute.value.span().or(attribute.span()))),
                format!("cannot evaluate `{key}`: {errors}"),
            )),
        }
    }

    let mut blocks: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for block in body.blocks() {
        let name = block.ident.as_str();
        if !block.labels.is_empty() {
            diagnostics.push(Diagnostic::error(
                DiagnosticKind::UnexpectedItem,
                Some(map.locate_span(block.span())),
                format!("block `{name}` takes no labels"),
            ));
        }
        let index = blocks.iter().position(|(n, _)| n == name);
        let count = index.map_or(0, |i| blocks[i].1.len());
        // The first block of a name is indexed as `name`, later ones as `name[i]`.
        let path = if count == 0 {
            join(prefix, name)
        } else {
            format!("{}[{count}]", join(prefix, name))
        };
        if let Some(span) = block.span() {
            spans.insert(path.clone(), span);
        }
        let value = body_to_json(&block.body, &path, ctx, map, spans, diagnostics);
        match index {
            Some(i) => blocks[i].1.push(value.into()),
            None => blocks.push((name.to_string(), vec![value.into()])),
        }
    }
    for (name, mut values) in blocks {
        if object.contains_key(&name) {
            diagnostics.push(Diagnostic::error(
                DiagnosticKind::UnexpectedItem,
                spans.get(&join(prefix, &name)).map(|s| map.locate(s.start)),
                format!("`{name}` is given both as an option and as a block"),
            ));
            continue;
        }
        let value = if values.len() == 1 {
            values.pop().unwrap_or_default()
        } else {
            serde_json::Value::Array(values)
        };
        object.insert(name, value);
    }
    object
}

/// Records spans of array elements and object values inside a literal.
fn index_expression(expression: &Expression, path: &str, spans: &mut SpanIndex) {
    match expression {
        Expression::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let element_path = format!("{path}[{i}]");
                if let Some(span) = element.span() {
                    spans.insert(element_path.clone(), span);
                }
                spans.insert_value(element_path.clone(), element.span());
                index_expression(element, &element_path, spans);
            }
        }
        Expression::Object(object) => {
            for (key, value) in object.iter() {
                let name = match key {
                    hcl_edit::expr::ObjectKey::Ident(ident) => ident.as_str().to_string(),
                    hcl_edit::expr::ObjectKey::Expression(e) => match e.as_str() {
                        Some(s) => s.to_string(),
                        None => continue,
                    },
                };
                let value_path = join(path, &name);
                if let Some(span) = key.span() {
                    spans.insert(value_path.clone(), span);
                }
                spans.insert_value(value_path.clone(), value.expr().span());
                index_expression(value.expr(), &value_path, spans);
            }
        }
        _ => {}
    }
}
