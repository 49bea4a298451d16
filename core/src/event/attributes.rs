//! Attributes: the key/value pairs that say where an event came from
//! (pid, cgroup, container, pod, node) and what it is about (device, port).
//!
//! Most events carry a handful of attributes, so they are kept inline in a
//! small vector (no heap allocation up to [`INLINE_ATTRIBUTES`] pairs) and
//! looked up by linear scan, which beats hashing at these sizes. Keys follow
//! OpenTelemetry semantic conventions where one exists ([`keys`]); sinks
//! translate them to their own rules (Prometheus turns `.` into `_`).

use std::fmt;
use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use smallvec::SmallVec;

use super::SharedStr;

/// How many attributes an event holds before its attribute list spills to the heap.
pub const INLINE_ATTRIBUTES: usize = 4;

/// Well-known attribute keys, shared by every component so that enrichment,
/// filtering and sinks agree on names.
pub mod keys {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Whether the node's name is only its host name, off Kubernetes.
    static HOST_ONLY: AtomicBool = AtomicBool::new(false);

    /// The key sources put the node's name under: [`NODE`]
    /// (`k8s.node.name`) on a Kubernetes node or when the name was given,
    /// [`HOST`] (`host.name`) when it is only the host name, off
    /// Kubernetes: a `k8s.*` attribute there would claim a cluster that
    /// is not.
    pub fn node() -> &'static str {
        if HOST_ONLY.load(Ordering::Relaxed) {
            HOST
        } else {
            NODE
        }
    }

    /// Says, once at startup, whether the node's name is only its host
    /// name off Kubernetes (see [`node`]).
    pub fn set_node_is_host_name(host_only: bool) {
        HOST_ONLY.store(host_only, Ordering::Relaxed);
    }

    /// Process id (the thread-group id, what users call the pid).
    pub const PID: &str = "process.pid";
    /// Short process name (`comm`, 15 bytes at most).
    pub const COMM: &str = "process.executable.name";
    /// Full path of the process executable.
    pub const EXE: &str = "process.executable.path";
    /// cgroup v2 id (inode number of the cgroup directory).
    pub const CGROUP_ID: &str = "cgroup.id";
    /// cgroup path, relative to the cgroup v2 root.
    pub const CGROUP_PATH: &str = "cgroup.path";
    /// Container id (64 hex characters for containerd, CRI-O and Docker).
    pub const CONTAINER_ID: &str = "container.id";
    /// Kubernetes node name, or the name given to the agent; sources use
    /// [`node`], which is [`HOST`] off Kubernetes.
    pub const NODE: &str = "k8s.node.name";
    /// Host name.
    pub const HOST: &str = "host.name";
    /// Kubernetes namespace.
    pub const NAMESPACE: &str = "k8s.namespace.name";
    /// Kubernetes pod name.
    pub const POD: &str = "k8s.pod.name";
    /// Kubernetes pod UID.
    pub const POD_UID: &str = "k8s.pod.uid";
    /// Container name inside its pod.
    pub const CONTAINER_NAME: &str = "k8s.container.name";
    /// The id of the component that produced the event.
    pub const COMPONENT_ID: &str = "sonde.component.id";
}

/// One attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Text.
    Str(SharedStr),
    /// Signed integer (pids, ports, ids that fit in 63 bits).
    Int(i64),
    /// Floating point number.
    Float(f64),
    /// Boolean.
    Bool(bool),
}

impl Value {
    /// The value as text, when it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer, when it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Whether this value renders as `text` (so `"1234"` matches pid 1234).
    pub fn matches_text(&self, text: &str) -> bool {
        match self {
            Value::Str(s) => s.as_str() == text,
            Value::Int(i) => text.parse::<i64>().is_ok_and(|t| t == *i),
            Value::Float(f) => text.parse::<f64>().is_ok_and(|t| t == *f),
            Value::Bool(b) => text.parse::<bool>().is_ok_and(|t| t == *b),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(s) => serializer.serialize_str(s),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Float(f) => serializer.serialize_f64(*f),
            Value::Bool(b) => serializer.serialize_bool(*b),
        }
    }
}

impl From<SharedStr> for Value {
    fn from(v: SharedStr) -> Self {
        Value::Str(v)
    }
}
impl From<&'static str> for Value {
    fn from(v: &'static str) -> Self {
        Value::Str(SharedStr::from_static(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v.into())
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(v.into())
    }
}
impl From<u64> for Value {
    /// Values above `i64::MAX` (never seen for pids, ports or cgroup ids) saturate.
    fn from(v: u64) -> Self {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// One attribute.
pub type Attribute = (SharedStr, Value);

/// Attributes shared by many events, by reference: a process' resource
/// attributes (executable, cgroup, container, pod …) that an enrichment
/// adds to every event of that process.
pub type SharedAttributes = Arc<[Attribute]>;

/// An ordered set of attributes; a key appears at most once.
///
/// Two parts: the event's own pairs, inline, and optionally a
/// [`SharedAttributes`] set held by reference (one reference-count
/// increment per event, where copying a dozen pairs cost ~800 ns). The
/// event's own pairs win over shared ones of the same key; readers see one
/// set ([`Attributes::iter`], [`Attributes::get`]). Removing or filtering
/// first copies the shared pairs in (rare: `tag`'s `remove` and `rename`).
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    pairs: SmallVec<[Attribute; INLINE_ATTRIBUTES]>,
    shared: Option<SharedAttributes>,
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Self {
        Self::default()
    }

    fn own(&self, key: &str) -> Option<&Value> {
        self.pairs.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing an earlier value of the same key.
    pub fn insert(&mut self, key: impl Into<SharedStr>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            // A shared pair of the same key is shadowed by this one.
            None => self.pairs.push((key, value)),
        }
    }

    /// No attributes, with room for `capacity` pairs (one allocation for a
    /// set known to outgrow the inline ones).
    pub fn with_capacity(capacity: usize) -> Self {
        Attributes {
            pairs: SmallVec::with_capacity(capacity),
            shared: None,
        }
    }

    /// Adds `key`, which the caller knows is not among the event's own
    /// pairs (a set built from distinct keys): no scan for an earlier
    /// value, which [`Attributes::insert`] makes. A shared pair of the same
    /// key is shadowed, as by `insert`.
    pub fn push_new(&mut self, key: impl Into<SharedStr>, value: impl Into<Value>) {
        let key = key.into();
        debug_assert!(self.own(&key).is_none(), "push_new of a present key {key}");
        self.pairs.push((key, value.into()));
    }

    /// Sets `key` only when it is absent; returns whether it was set.
    pub fn insert_if_absent(&mut self, key: impl Into<SharedStr>, value: impl Into<Value>) -> bool {
        let key = key.into();
        if self.contains(&key) {
            return false;
        }
        self.pairs.push((key, value.into()));
        true
    }

    /// Adds `shared` by reference: its pairs count as this set's where
    /// their key is absent (as [`Attributes::insert_if_absent`] would).
    /// A shared set held already is copied in first.
    pub fn add_shared(&mut self, shared: SharedAttributes) {
        if self.shared.is_some() {
            self.materialize();
        }
        self.shared = Some(shared);
    }

    /// The shared part, if any (to tell events of one process at a glance).
    pub fn shared(&self) -> Option<&SharedAttributes> {
        self.shared.as_ref()
    }

    /// The event's own pairs, without the shared ones.
    pub fn own_pairs(&self) -> impl ExactSizeIterator<Item = (&SharedStr, &Value)> {
        self.pairs.iter().map(|(k, v)| (k, v))
    }

    /// Copies the shared pairs in, so that the set can be changed freely.
    fn materialize(&mut self) {
        let Some(shared) = self.shared.take() else { return };
        self.pairs.reserve(shared.len());
        for (key, value) in shared.iter() {
            if self.own(key).is_none() {
                self.pairs.push((key.clone(), value.clone()));
            }
        }
    }

    /// Makes room for `additional` more pairs at once, so that an
    /// enrichment that adds several attributes allocates once.
    pub fn reserve(&mut self, additional: usize) {
        self.pairs.reserve(additional);
    }

    /// Builder form of [`Attributes::insert`].
    pub fn with(mut self, key: impl Into<SharedStr>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.own(key).or_else(|| {
            let shared = self.shared.as_deref()?;
            shared.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
        })
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        if self
            .shared
            .as_deref()
            .is_some_and(|s| s.iter().any(|(k, _)| k.as_str() == key))
        {
            self.materialize();
        }
        let index = self.pairs.iter().position(|(k, _)| k.as_str() == key)?;
        Some(self.pairs.remove(index).1)
    }

    /// Renames `from` to `to`, replacing any value `to` had; returns whether `from` existed.
    pub fn rename(&mut self, from: &str, to: SharedStr) -> bool {
        let Some(value) = self.remove(from) else {
            return false;
        };
        self.insert(to, value);
        true
    }

    /// Keys and values: the event's own pairs in insertion order, then the
    /// shared ones they do not shadow.
    pub fn iter(&self) -> impl Iterator<Item = (&SharedStr, &Value)> {
        let shared = self.shared.as_deref().unwrap_or_default();
        self.pairs.iter().map(|(k, v)| (k, v)).chain(
            shared
                .iter()
                .filter(|(k, _)| self.own(k).is_none())
                .map(|(k, v)| (k, v)),
        )
    }

    /// Keeps only the pairs for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &Value) -> bool) {
        self.materialize();
        self.pairs.retain(|(k, v)| keep(k, v));
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        let shared = self.shared.as_deref().unwrap_or_default();
        self.pairs.len() + shared.iter().filter(|(k, _)| self.own(k).is_none()).count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty() && self.shared.as_deref().is_none_or(<[Attribute]>::is_empty)
    }
}

/// Equal when they hold the same pairs, however they are held (own or
/// shared) and in whatever order: a key appears at most once in each.
impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        let same_parts = self.pairs == other.pairs
            && match (&self.shared, &other.shared) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
                _ => false,
            };
        same_parts || (self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v)))
    }
}

impl<K: Into<SharedStr>, V: Into<Value>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut attributes = Attributes::new();
        for (k, v) in iter {
            attributes.insert(k, v);
        }
        attributes
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_and_rename_moves() {
        let mut a = Attributes::new().with(keys::PID, 42u32).with("dev", "vda");
        a.insert(keys::PID, 43u32);
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(keys::PID), Some(&Value::Int(43)));
        assert!(a.rename("dev", "device".into()));
        assert_eq!(a.get("device").and_then(Value::as_str), Some("vda"));
        assert!(a.get("dev").is_none());
        assert!(!a.insert_if_absent("device", "x"));
    }

    #[test]
    fn shared_pairs_read_as_own_ones_and_own_ones_win() {
        let shared: SharedAttributes = Arc::from(vec![
            (SharedStr::from("container.id"), Value::from("c1")),
            (SharedStr::from(keys::COMM), Value::from("nginx")),
        ]);
        let mut a = Attributes::new().with(keys::PID, 42u32).with(keys::COMM, "own");
        a.add_shared(shared.clone());
        assert_eq!(a.len(), 3);
        assert_eq!(a.get(keys::COMM).and_then(Value::as_str), Some("own"));
        assert_eq!(a.get("container.id").and_then(Value::as_str), Some("c1"));
        let keys: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, [keys::PID, keys::COMM, "container.id"]);
        assert!(!a.insert_if_absent("container.id", "c2"));
        // The same pairs held otherwise are equal.
        let copied = Attributes::new()
            .with("container.id", "c1")
            .with(keys::COMM, "own")
            .with(keys::PID, 42u32);
        assert_eq!(a, copied);
        // Removing a shared key copies the shared pairs in first.
        assert_eq!(
            a.remove("container.id")
                .and_then(|v| v.as_str().map(str::to_string))
                .as_deref(),
            Some("c1")
        );
        assert!(a.shared().is_none());
        assert_eq!(a.len(), 2);
        assert_eq!(Arc::strong_count(&shared), 1);
        let json = serde_json::to_string(&Attributes::new().with("x", 1i64)).unwrap();
        assert_eq!(json, r#"{"x":1}"#);
    }

    #[test]
    fn integer_values_match_their_text() {
        assert!(Value::Int(1234).matches_text("1234"));
        assert!(!Value::Int(1234).matches_text("123"));
        assert!(Value::from("a").matches_text("a"));
    }
}
