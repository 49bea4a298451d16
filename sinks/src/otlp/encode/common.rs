//! What every signal shares: attribute values, the split of an event's
//! attributes into resource and point attributes, and grouping by resource
//! and scope.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sonde_core::event::{keys, Attributes, SharedStr, Value};

use crate::otlp::config::DEFAULT_SERVICE_NAME;

/// Name of the instrumentation scope of everything sonde sends.
pub const SCOPE_NAME: &str = "sonde";
/// `service.name`, which every OTLP resource should carry.
pub const SERVICE_NAME: &str = "service.name";

/// Attribute-key namespaces that describe the entity producing telemetry
/// (OpenTelemetry resource semantic conventions), not one data point. Events
/// carry them among their attributes; OTLP wants them on the resource.
const RESOURCE_PREFIXES: [&str; 9] = [
    "host.",
    "process.",
    "container.",
    "k8s.",
    "service.",
    "os.",
    "cloud.",
    "deployment.",
    "telemetry.",
];

/// Whether `key` belongs on the resource rather than the data point.
pub fn is_resource_key(key: &str) -> bool {
    RESOURCE_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// An attribute value as OTLP's `AnyValue`.
pub fn any_value(value: &Value) -> AnyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s.to_string()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Float(f) => any_value::Value::DoubleValue(*f),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    };
    AnyValue { value: Some(value) }
}

/// A string `AnyValue`.
pub fn string_value(text: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text.to_string())),
    }
}

/// One OTLP attribute.
pub fn key_value(key: &str, value: &Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(any_value(value)),
        ..KeyValue::default()
    }
}

/// The attributes of one data point, record or span: all but the resource
/// ones and the scope's.
pub fn point_attributes(attributes: &Attributes) -> Vec<KeyValue> {
    attributes
        .iter()
        .filter(|(k, _)| !is_resource_key(k) && k.as_str() != keys::COMPONENT_ID)
        .map(|(k, v)| key_value(k, v))
        .collect()
}

/// Hash of one key/value pair.
fn pair_hash(key: &str, value: &Value) -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same pair hashes the same in
    // every call, which grouping and start-time tracking rely on.
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    match value {
        Value::Str(s) => (0u8, s.as_str()).hash(&mut h),
        Value::Int(i) => (1u8, i).hash(&mut h),
        Value::Float(f) => (2u8, f.to_bits()).hash(&mut h),
        Value::Bool(b) => (3u8, b).hash(&mut h),
    }
    h.finish()
}

/// Hash of the pairs of `attributes` that `keep` selects, independent of
/// their order (the same set in another order is the same resource).
pub fn set_hash(attributes: &Attributes, keep: impl Fn(&str) -> bool) -> u64 {
    attributes
        .iter()
        .filter(|(k, _)| keep(k))
        .fold(0u64, |acc, (k, v)| acc.wrapping_add(pair_hash(k, v)))
}

/// Whether `a` and `b` hold the same resource attributes.
fn same_resource(a: &Attributes, b: &Attributes) -> bool {
    // Events of one process mostly share one enrichment set (`pod_enrich`):
    // then one pointer comparison covers it, and only the events' own
    // pairs are compared. Own pairs that differ but shadow the shared set
    // alike fall through to the full comparison.
    if let (Some(x), Some(y)) = (a.shared(), b.shared()) {
        if std::sync::Arc::ptr_eq(x, y) {
            let own = |attrs: &Attributes| attrs.own_pairs().filter(|(k, _)| is_resource_key(k)).count();
            let same_own = own(a) == own(b)
                && a.own_pairs()
                    .filter(|(k, _)| is_resource_key(k))
                    .all(|(k, v)| b.own_pairs().any(|(l, w)| l == k && w == v));
            if same_own {
                return true;
            }
        }
    }
    let count = |x: &Attributes| x.iter().filter(|(k, _)| is_resource_key(k)).count();
    count(a) == count(b)
        && a.iter()
            .filter(|(k, _)| is_resource_key(k))
            .all(|(k, v)| b.get(k).is_some_and(|w| w == v))
}

/// How resources are completed: the sink's static attributes, and the
/// `service.name` fallback.
#[derive(Clone, Debug)]
pub struct ResourceDefaults {
    extra: Vec<(String, Value)>,
    service_name: Option<String>,
    host_name: SharedStr,
}

impl ResourceDefaults {
    /// From the sink's `resource` option and the agent's node name (the
    /// `host.name` of events without one).
    pub fn new(resource: &BTreeMap<String, String>, host_name: SharedStr) -> Self {
        ResourceDefaults {
            extra: resource
                .iter()
                .filter(|(k, _)| k.as_str() != SERVICE_NAME)
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
            service_name: resource.get(SERVICE_NAME).cloned(),
            host_name,
        }
    }

    /// The OTLP resource of an event with `attributes`.
    pub fn resource(&self, attributes: &Attributes) -> Resource {
        let mut kv: Vec<KeyValue> = attributes
            .iter()
            .filter(|(k, _)| is_resource_key(k))
            .map(|(k, v)| key_value(k, v))
            .collect();
        for (k, v) in &self.extra {
            if !attributes.contains(k) {
                kv.push(key_value(k, v));
            }
        }
        if !attributes.contains(keys::HOST) && !self.extra.iter().any(|(k, _)| k == keys::HOST) {
            kv.push(key_value(keys::HOST, &Value::Str(self.host_name.clone())));
        }
        if !attributes.contains(SERVICE_NAME) {
            // Semantic conventions: a service without a name is
            // `unknown_service:<executable>`; node-level events are sonde's own.
            let name = match (&self.service_name, attributes.get(keys::COMM)) {
                (Some(name), _) => name.clone(),
                (None, Some(comm)) => format!("unknown_service:{comm}"),
                (None, None) => DEFAULT_SERVICE_NAME.to_string(),
            };
            kv.push(key_value(SERVICE_NAME, &Value::from(name)));
        }
        // A stable order makes equal resources byte-identical on the wire.
        kv.sort_by(|a, b| a.key.cmp(&b.key));
        Resource {
            attributes: kv,
            ..Resource::default()
        }
    }
}

/// The instrumentation scope of events produced by `component` (the
/// `sonde.component.id` attribute), or sonde's plain scope.
pub fn scope(component: Option<&SharedStr>) -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        attributes: component
            .map(|c| vec![key_value(keys::COMPONENT_ID, &Value::Str(c.clone()))])
            .unwrap_or_default(),
        ..InstrumentationScope::default()
    }
}

/// Events of one resource, by scope.
pub struct ResourceGroup<T> {
    /// The resource.
    pub resource: Resource,
    /// One entry per scope: the producing component, and the scope's content.
    pub scopes: Vec<(Option<SharedStr>, T)>,
    /// Attributes of the first event, to tell hash collisions apart.
    origin: Attributes,
}

/// Groups events by resource, then scope, keeping first-seen order.
pub struct Grouper<'a, T> {
    defaults: &'a ResourceDefaults,
    by_hash: HashMap<u64, Vec<usize>>,
    /// The groups, in the order their first event came.
    pub groups: Vec<ResourceGroup<T>>,
    last: Option<usize>,
}

impl<'a, T: Default> Grouper<'a, T> {
    /// No groups yet.
    pub fn new(defaults: &'a ResourceDefaults) -> Self {
        Grouper {
            defaults,
            by_hash: HashMap::new(),
            groups: Vec::new(),
            last: None,
        }
    }

    /// The scope content for an event with `attributes`, created if new.
    pub fn scope_for(&mut self, attributes: &Attributes) -> &mut T {
        let group = match self.last {
            // Consecutive events mostly share their resource: compare with
            // the previous one's before hashing and looking up.
            Some(i) if same_resource(&self.groups[i].origin, attributes) => i,
            _ => self.find_or_insert(set_hash(attributes, is_resource_key), attributes),
        };
        self.last = Some(group);
        let component = attributes.get(keys::COMPONENT_ID).and_then(Value::as_str);
        let scopes = &mut self.groups[group].scopes;
        let index = match scopes.iter().position(|(c, _)| c.as_deref() == component) {
            Some(i) => i,
            None => {
                scopes.push((component.map(|c| SharedStr::from(c.to_string())), T::default()));
                scopes.len() - 1
            }
        };
        &mut scopes[index].1
    }

    fn find_or_insert(&mut self, hash: u64, attributes: &Attributes) -> usize {
        let candidates = self.by_hash.entry(hash).or_default();
        if let Some(&i) = candidates
            .iter()
            .find(|&&i| same_resource(&self.groups[i].origin, attributes))
        {
            return i;
        }
        self.groups.push(ResourceGroup {
            resource: self.defaults.resource(attributes),
            scopes: Vec::new(),
            origin: attributes.clone(),
        });
        candidates.push(self.groups.len() - 1);
        self.groups.len() - 1
    }
}
