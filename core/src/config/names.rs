//! Valid option names and values, read from a type's JSON schema, for
//! "did you mean" and "valid options" hints: the registered schema is the
//! one description of a type's options, so hints agree with
//! `sonde components TYPE` and with the editor schema.

use serde_json::Value;

/// The options of the object at `path` (`""` for the block itself,
/// `buffer`, `listeners[0]`) in `root`, sorted.
pub fn options(root: &Value, path: &str) -> Vec<String> {
    let Some(node) = at(root, path) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    collect(root, node, &mut names, &mut |node, names| {
        if let Some(properties) = node.get("properties").and_then(Value::as_object) {
            names.extend(properties.keys().cloned());
        }
    });
    names.sort();
    names.dedup();
    names
}

/// The values allowed at `path` when it is an enumeration (`enum`, or
/// `oneOf`/`anyOf` of `const`s), in schema order.
pub fn variants(root: &Value, path: &str) -> Vec<String> {
    let Some(node) = at(root, path) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    collect(root, node, &mut names, &mut |node, names| {
        if let Some(values) = node.get("enum").and_then(Value::as_array) {
            names.extend(values.iter().filter_map(Value::as_str).map(str::to_string));
        }
        if let Some(value) = node.get("const").and_then(Value::as_str) {
            names.push(value.to_string());
        }
    });
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Applies `visit` to `node` and every alternative or part of it
/// (`$ref`, `anyOf`, `oneOf`, `allOf`).
fn collect(root: &Value, node: &Value, names: &mut Vec<String>, visit: &mut dyn FnMut(&Value, &mut Vec<String>)) {
    let node = resolve(root, node);
    visit(node, names);
    for key in ["anyOf", "oneOf", "allOf"] {
        for part in node.get(key).and_then(Value::as_array).into_iter().flatten() {
            collect(root, part, names, visit);
        }
    }
}

/// The schema of the value at `path`.
fn at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = root;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], segment[i..].matches('[').count()),
            None => (segment, 0),
        };
        node = property(root, node, name)?;
        for _ in 0..indexes {
            node = find(root, node, &|n| n.get("items"))?;
        }
    }
    Some(node)
}

/// The schema of option `name` of the object `node`.
fn property<'a>(root: &'a Value, node: &'a Value, name: &str) -> Option<&'a Value> {
    find(root, node, &|n| {
        n.get("properties")
            .and_then(|p| p.get(name))
            .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
    })
}

/// The first `get` that answers in `node` or its alternatives.
fn find<'a>(root: &'a Value, node: &'a Value, get: &dyn Fn(&'a Value) -> Option<&'a Value>) -> Option<&'a Value> {
    let node = resolve(root, node);
    if let Some(found) = get(node) {
        return Some(found);
    }
    ["anyOf", "oneOf", "allOf"]
        .iter()
        .flat_map(|key| node.get(*key).and_then(Value::as_array).into_iter().flatten())
        .find_map(|part| find(root, part, get))
}

/// Follows a local `$ref` (`#/$defs/Name`).
fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            match root.get("$defs").and_then(|d| d.get(name)) {
                Some(target) => resolve(root, target),
                None => node,
            }
        }
        None => node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "interval": {"type": "string"},
                "mode": {"$ref": "#/$defs/Mode"},
                "kind": {"anyOf": [{"$ref": "#/$defs/Kind"}, {"type": "null"}]},
                "tls": {"anyOf": [{"$ref": "#/$defs/Tls"}, {"type": "null"}]},
                "rules": {"type": "array", "items": {"$ref": "#/$defs/Tls"}}
            },
            "$defs": {
                "Mode": {"oneOf": [{"const": "exporter", "type": "string"}, {"enum": ["remote_write"], "type": "string"}]},
                "Kind": {"type": "string", "enum": ["metric", "log"]},
                "Tls": {"type": "object", "properties": {"ca_file": {}, "cert_file": {}}}
            }
        })
    }

    #[test]
    fn reads_options_and_variants_through_refs() {
        let s = schema();
        assert_eq!(options(&s, ""), ["interval", "kind", "mode", "rules", "tls"]);
        assert_eq!(options(&s, "tls"), ["ca_file", "cert_file"]);
        assert_eq!(options(&s, "rules[2]"), ["ca_file", "cert_file"]);
        assert_eq!(variants(&s, "mode"), ["exporter", "remote_write"]);
        assert_eq!(variants(&s, "kind"), ["metric", "log"]);
        assert!(options(&s, "nothing").is_empty());
    }
}
