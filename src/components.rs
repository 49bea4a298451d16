//! `sonde components` and `sonde schema`: documentation generated from the
//! config structs, so it cannot drift from what the parser accepts.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use schemars::{Schema, SchemaGenerator};
use serde_json::{json, Map, Value};
use sonde_core::config::{did_you_mean, AgentConfig, BatchConfig, BufferConfig, RequestConfig};
use sonde_core::registry::ComponentType;
use sonde_core::{ComponentKind, Registry};

/// Prints every type, or one type in full.
pub fn print(registry: &Registry, type_name: Option<&str>) -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    let code = render(&mut out, registry, type_name);
    emit(&out)?;
    Ok(code)
}

/// Writes to stdout; a closed pipe (`sonde components | head`) is not an error.
pub fn emit(text: &str) -> std::io::Result<()> {
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn render(out: &mut String, registry: &Registry, type_name: Option<&str>) -> ExitCode {
    let Some(name) = type_name else {
        for kind in ComponentKind::ALL {
            let _ = writeln!(out, "{}s:", kind.as_str());
            for ty in registry.iter().filter(|t| t.kind == kind) {
                let _ = writeln!(out, "  {:<18} {}", ty.name, ty.summary());
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "`sonde components TYPE` shows a type's options.");
        return ExitCode::SUCCESS;
    };
    let matches: Vec<&ComponentType> = registry.iter().filter(|t| t.name == name).collect();
    if matches.is_empty() {
        let names: Vec<&str> = registry.iter().map(|t| t.name).collect();
        let hint = did_you_mean(name, names.iter().copied())
            .map(|best| format!("; did you mean `{best}`?"))
            .unwrap_or_default();
        eprintln!("error: no component type `{name}`{hint}");
        return ExitCode::FAILURE;
    }
    for ty in matches {
        print_type(out, ty);
    }
    ExitCode::SUCCESS
}

fn print_type(out: &mut String, ty: &ComponentType) {
    let mut generator = SchemaGenerator::default();
    let schema = ty.schema(&mut generator);
    let _ = writeln!(out, "{} \"{}\"", ty.kind, ty.name);
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "\n{}\n", indent(description, "  "));
    }
    let _ = writeln!(out, "options:");
    print_options(out, &schema, &schema, "  ");
    if ty.kind != ComponentKind::Source {
        let _ = writeln!(
            out,
            "  inputs (list of strings, required)\n      Ids of the components whose output this one consumes."
        );
    }
    if ty.kind == ComponentKind::Sink {
        let mut g = SchemaGenerator::default();
        let _ = writeln!(out, "  buffer {{ … }}  the input queue:");
        let buffer = g.root_schema_for::<BufferConfig>();
        print_options(out, &buffer, &buffer, "      ");
        let _ = writeln!(out, "  request {{ … }}  how batches are sent:");
        let request = g.root_schema_for::<RequestConfig>();
        print_options(out, &request, &request, "      ");
        let _ = writeln!(out, "  batch {{ … }}  merging of queued batches into bigger calls:");
        let batch = g.root_schema_for::<BatchConfig>();
        print_options(out, &batch, &batch, "      ");
    }
    let _ = writeln!(out);
}

fn print_options(out: &mut String, schema: &Schema, root: &Schema, pad: &str) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        let _ = writeln!(out, "{pad}(none)");
        return;
    };
    for (name, property) in properties {
        let needed = if required.contains(&name.as_str()) {
            ", required"
        } else {
            ""
        };
        let _ = writeln!(out, "{pad}{name} ({}{needed})", type_name(property, root));
        if let Some(description) = property.get("description").and_then(Value::as_str) {
            let _ = writeln!(out, "{}", indent(description, &format!("{pad}    ")));
        }
        for (value, doc) in enum_values(property, root) {
            let _ = writeln!(out, "{pad}      \"{value}\": {doc}");
        }
        // A block (`tls { … }`, `basic_auth { … }`): its own options too.
        if let Some(block) = block_schema(property, root) {
            print_options(
                out,
                &Schema::try_from(block.clone()).unwrap_or_default(),
                root,
                &format!("{pad}    "),
            );
        }
    }
}

/// The schema of a nested block's options: an object with `properties`,
/// possibly behind a `$ref` and an `anyOf` with null (an optional block).
fn block_schema<'a>(property: &'a Value, root: &'a Schema) -> Option<&'a Value> {
    let resolved = resolve(property, root);
    if resolved
        .get("properties")
        .is_some_and(|p| p.as_object().is_some_and(|p| !p.is_empty()))
    {
        return Some(resolved);
    }
    let alternatives = resolved.get("anyOf").or_else(|| resolved.get("oneOf"))?.as_array()?;
    let mut objects = alternatives.iter().filter_map(|a| block_schema(a, root));
    let block = objects.next()?;
    // Several object shapes are not one block: leave them to the description.
    objects.next().is_none().then_some(block)
}

fn resolve<'a>(value: &'a Value, root: &'a Schema) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            root.get("$defs").and_then(|d| d.get(name)).unwrap_or(value)
        }
        None => value,
    }
}

fn type_name(property: &Value, root: &Schema) -> String {
    let resolved = resolve(property, root);
    if let Some(any) = resolved.get("anyOf").and_then(Value::as_array) {
        let names: Vec<String> = any.iter().map(|v| type_name(v, root)).filter(|n| n != "null").collect();
        return format!("{} or null", names.join(" | "));
    }
    if resolved.get("oneOf").is_some() || resolved.get("enum").is_some() {
        return "one of the values below".into();
    }
    match resolved.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let item = resolved.get("items").map(|i| type_name(i, root)).unwrap_or_default();
            format!("list of {item}s")
        }
        Some(Value::String(t)) if t == "object" => "map".into(),
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    }
}

fn enum_values(property: &Value, root: &Schema) -> Vec<(String, String)> {
    let resolved = resolve(property, root);
    let variants = resolved
        .get("oneOf")
        .or_else(|| resolved.get("anyOf"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    variants
        .iter()
        .map(|v| resolve(v, root))
        .filter_map(|v| {
            let value = v
                .get("const")
                .and_then(Value::as_str)
                .or_else(|| v.get("enum").and_then(|e| e.get(0)).and_then(Value::as_str))?;
            let doc = v.get("description").and_then(Value::as_str).unwrap_or("");
            Some((value.to_string(), doc.replace('\n', " ")))
        })
        .collect()
}

fn indent(text: &str, pad: &str) -> String {
    text.lines().map(|l| format!("{pad}{l}")).collect::<Vec<_>>().join("\n")
}

/// The JSON schema of a whole pipeline, in HCL's JSON shape:
/// `{"agent": {…}, "source": {"TYPE": {"ID": {…}}}, …}`.
///
/// One generator makes every type's schema, so that a struct used by two
/// types is one definition; each type's own `$defs` is moved to the root,
/// where its `$ref`s (`#/$defs/NAME`) point.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut generator = SchemaGenerator::default();
    let agent = detached(generator.root_schema_for::<AgentConfig>());
    let buffer = generator.subschema_for::<BufferConfig>().to_value();
    let request = generator.subschema_for::<RequestConfig>().to_value();
    let batch = generator.subschema_for::<BatchConfig>().to_value();
    let inputs = json!({
        "type": "array",
        "items": {"type": "string"},
        "description": "Ids of the components whose output this one consumes."
    });
    let mut kinds = Map::new();
    for kind in ComponentKind::ALL {
        let mut types = Map::new();
        for ty in registry.iter().filter(|t| t.kind == kind) {
            let mut options = detached(ty.schema(&mut generator));
            if kind != ComponentKind::Source {
                // The core reads these beside the type's own options
                // (`CommonOptions`); `inputs` is required.
                let mut common = vec![("inputs", inputs.clone())];
                if kind == ComponentKind::Sink {
                    common.extend([
                        ("buffer", buffer.clone()),
                        ("request", request.clone()),
                        ("batch", batch.clone()),
                    ]);
                }
                if let Some(object) = options.as_object_mut() {
                    let properties = object.entry("properties").or_insert_with(|| json!({}));
                    if let Some(properties) = properties.as_object_mut() {
                        for (name, schema) in common {
                            properties.insert(name.into(), schema);
                        }
                    }
                    let required = object.entry("required").or_insert_with(|| json!([]));
                    if let Some(required) = required.as_array_mut() {
                        required.push("inputs".into());
                    }
                }
            }
            types.insert(
                ty.name.to_string(),
                json!({"type": "object", "additionalProperties": options, "description": ty.summary()}),
            );
        }
        kinds.insert(
            kind.as_str().to_string(),
            json!({"type": "object", "properties": types, "additionalProperties": false}),
        );
    }
    let mut properties = kinds;
    properties.insert("agent".into(), agent);
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sonde pipeline",
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
        "$defs": generator.take_definitions(true),
    })
}

/// A root schema as a part of another: without its own `$schema` and
/// `$defs` (the generator keeps the definitions for the pipeline's root).
fn detached(schema: Schema) -> Value {
    let mut value = schema.to_value();
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
        object.remove("$defs");
    }
    value
}
