//! A metric's attributes as a Prometheus label set: allowed by the
//! allowlist and denylist, names sanitised, sorted, rendered once per event
//! into the series key (`a="x",b="y"`), which the exposition copies as is.

use std::borrow::Cow;
use std::sync::Arc;

use hashbrown::HashMap;
use smallvec::SmallVec;
use sonde_core::event::{Attributes, Metric, Value};

use super::encode::{escape_label_value, write_float};
use super::naming;
use super::store::{Kind, StoreConfig};

/// What a histogram's attribute named `le` is renamed to: `le` is its buckets'.
const EXPORTED_LE: &str = "exported_le";

/// Labels of one event, borrowed from it; sorted by name.
pub type LabelList<'a> = SmallVec<[(Cow<'a, str>, &'a Value); 8]>;

/// A series' labels as sorted (name, value) pairs, for remote write.
pub type LabelPairs = Arc<[(Box<str>, Box<str>)]>;

/// Attribute keys this many at most are remembered; beyond, names are
/// worked out per event (correct, only slower). Keys come from code and
/// configs, so a few dozen is the norm.
const MAX_CACHED_NAMES: usize = 4096;

/// Label names by attribute key: sanitised, and `None` where the
/// allowlist or denylist drops the label. Remembered, because OTel keys
/// (`k8s.pod.name`) all need sanitising, which would otherwise allocate
/// a string per label per event.
pub struct LabelNames {
    allowlist: Option<Vec<String>>,
    denylist: Vec<String>,
    cache: HashMap<Box<str>, Option<Box<str>>>,
}

impl LabelNames {
    /// The names `config`'s lists allow.
    pub fn new(config: &StoreConfig) -> Self {
        LabelNames {
            allowlist: config.label_allowlist.clone(),
            denylist: config.label_denylist.clone(),
            cache: HashMap::new(),
        }
    }

    fn resolve<'a>(&self, key: &'a str) -> Option<Cow<'a, str>> {
        let name = naming::label_name(key)?;
        let allowed = self
            .allowlist
            .as_ref()
            .is_none_or(|list| list.iter().any(|l| *l == name))
            && !self.denylist.iter().any(|l| *l == name);
        allowed.then_some(name)
    }

    /// Remembers the names of `attributes`' keys, before [`sorted`] reads them.
    pub fn learn(&mut self, attributes: &Attributes) {
        for (key, _) in attributes.iter() {
            if self.cache.len() < MAX_CACHED_NAMES && !self.cache.contains_key(key.as_str()) {
                let name = self.resolve(key).map(|n| Box::from(n.as_ref()));
                self.cache.insert(Box::from(key.as_str()), name);
            }
        }
    }

    fn get<'a>(&'a self, key: &'a str) -> Option<Cow<'a, str>> {
        match self.cache.get(key) {
            Some(name) => name.as_deref().map(Cow::Borrowed),
            None => self.resolve(key),
        }
    }
}

/// The allowed labels of `metric`, sanitised and sorted by name. Empty
/// values are left out (Prometheus treats an empty label as an absent
/// one); of two keys that sanitise alike, the first written is kept.
pub fn sorted<'a>(metric: &'a Metric, kind: Kind, names: &'a LabelNames) -> LabelList<'a> {
    let mut labels: LabelList<'a> = metric
        .attributes
        .iter()
        .filter(|(_, v)| v.as_str() != Some(""))
        .filter_map(|(k, v)| {
            let name = names.get(k)?;
            let name = if kind == Kind::Histogram && name == "le" {
                Cow::Borrowed(EXPORTED_LE)
            } else {
                name
            };
            Some((name, v))
        })
        .collect();
    // A stable sort, so that dedup keeps the first written.
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels.dedup_by(|later, earlier| later.0 == earlier.0);
    labels
}

/// Appends a label value as text: the same text in the exposition and in
/// remote write, so a series is the same series either way.
fn write_value(out: &mut String, value: &Value, escape: bool) {
    match value {
        Value::Str(s) if escape => escape_label_value(out, s),
        Value::Str(s) => out.push_str(s),
        Value::Int(n) => out.push_str(itoa::Buffer::new().format(*n)),
        Value::Float(f) => write_float(out, *f),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    }
}

/// Renders `labels` into `key` (cleared first) as `a="x",b="y"`, escaped.
pub fn render_key(key: &mut String, labels: &LabelList<'_>) {
    key.clear();
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        key.push_str(name);
        key.push_str("=\"");
        write_value(key, value, true);
        key.push('"');
    }
}

/// `labels` as owned pairs, values unescaped.
pub fn pairs(labels: &LabelList<'_>) -> LabelPairs {
    labels
        .iter()
        .map(|(name, value)| {
            let mut text = String::new();
            write_value(&mut text, value, false);
            (Box::from(name.as_ref()), text.into_boxed_str())
        })
        .collect()
}
