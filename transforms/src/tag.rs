//! `transform "tag"`: adds, renames and removes attributes.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use sonde_core::event::{EventBatch, SharedStr, Value};
use sonde_core::{function_transform, BoxError, FunctionTransform, Transform, TransformConfig, TransformContext};

/// Adds, renames and removes event attributes, in that order: removal runs
/// first, then renames, then additions.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagTransformConfig {
    /// Attributes to set (`{ env = "prod" }`). Default: none.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Whether `add` replaces a value the event already has. Default `true`.
    #[serde(default = "default_overwrite")]
    pub overwrite: bool,
    /// Attributes to rename, old name → new name. Default: none.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// Attributes to remove. Default: none.
    #[serde(default)]
    pub remove: Vec<String>,
}

const fn default_overwrite() -> bool {
    true
}

impl sonde_core::registry::TransformType for TagTransformConfig {
    const NAME: &'static str = "tag";
}

impl TransformConfig for TagTransformConfig {
    fn build(&self, _cx: &TransformContext) -> Result<Transform, BoxError> {
        Ok(function_transform(Tag::new(self)))
    }
}

/// The compiled tag transform; keys and values are shared strings made
/// once, so tagging an event copies no text.
#[derive(Debug, Clone)]
pub struct Tag {
    add: Vec<(SharedStr, Value)>,
    overwrite: bool,
    rename: Vec<(String, SharedStr)>,
    remove: Vec<String>,
}

impl Tag {
    /// Compiles `config`.
    pub fn new(config: &TagTransformConfig) -> Self {
        Tag {
            add: config
                .add
                .iter()
                .map(|(k, v)| (SharedStr::from(k.clone()), Value::Str(SharedStr::from(v.clone()))))
                .collect(),
            overwrite: config.overwrite,
            rename: config
                .rename
                .iter()
                .map(|(k, v)| (k.clone(), SharedStr::from(v.clone())))
                .collect(),
            remove: config.remove.clone(),
        }
    }
}

impl FunctionTransform for Tag {
    fn transform(&mut self, batch: &mut EventBatch) {
        for event in batch.events_mut() {
            let attributes = event.attributes_mut();
            for key in &self.remove {
                attributes.remove(key);
            }
            for (from, to) in &self.rename {
                attributes.rename(from, to.clone());
            }
            for (key, value) in &self.add {
                if self.overwrite {
                    attributes.insert(key.clone(), value.clone());
                } else {
                    attributes.insert_if_absent(key.clone(), value.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sonde_core::event::{Event, Metric};

    #[test]
    fn removes_renames_then_adds() {
        let config: TagTransformConfig = serde_json::from_value(serde_json::json!({
            "add": {"env": "prod", "dev": "new"},
            "overwrite": false,
            "rename": {"device": "dev"},
            "remove": ["secret"],
        }))
        .unwrap();
        let mut tag = Tag::new(&config);
        let mut m = Metric::gauge("x", 1.0);
        m.attributes.insert("device", "vda");
        m.attributes.insert("secret", "s");
        let mut batch: EventBatch = vec![Event::from(m)].into();
        tag.transform(&mut batch);
        let a = batch.events()[0].attributes();
        assert!(a.get("secret").is_none());
        assert_eq!(
            a.get("dev").and_then(Value::as_str),
            Some("vda"),
            "rename wins over add without overwrite"
        );
        assert_eq!(a.get("env").and_then(Value::as_str), Some("prod"));
    }
}
