//! [`SharedStr`]: the string type of event names, attribute keys and values.
//!
//! Events are built and cloned millions of times a second, while the strings
//! they carry come from a small set (metric names, attribute keys, pod names).
//! A `SharedStr` is a `&'static str` (no allocation, no refcount), a short
//! text kept inline (up to [`INLINE_MAX`] bytes: a pid, a port, a node name,
//! `env = "prod"`; cloned by copying 24 bytes, with no atomic reference
//! count to touch, which on a hot pipeline is most of a clone's cost), or an
//! `Arc<str>` shared by every event that carries the same longer text, so
//! cloning an event never allocates.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Texts up to this many bytes are kept inline.
pub const INLINE_MAX: usize = 24;

/// A cheaply clonable, immutable string.
#[derive(Clone)]
pub enum SharedStr {
    /// Text known at compile time: free to create and clone.
    Static(&'static str),
    /// Short text made at run time, inline (`compact_str` keeps up to
    /// [`INLINE_MAX`] bytes in place): cloned by a copy, no reference count.
    Inline(CompactString),
    /// Longer text made at run time, shared by reference count.
    Shared(Arc<str>),
}

impl SharedStr {
    /// Wraps a string literal without allocating.
    pub const fn from_static(s: &'static str) -> Self {
        SharedStr::Static(s)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        match self {
            SharedStr::Static(s) => s,
            SharedStr::Inline(s) => s.as_str(),
            SharedStr::Shared(s) => s,
        }
    }
}

impl Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for SharedStr {}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for SharedStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for SharedStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for SharedStr {
    // Must hash like `str` so that `Borrow<str>` lookups in maps work.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for SharedStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for SharedStr {
    fn from(s: &'static str) -> Self {
        SharedStr::Static(s)
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> Self {
        SharedStr::copied(&s)
    }
}

impl SharedStr {
    /// A copy of `s`: inline when short, else in a new shared allocation.
    pub fn copied(s: &str) -> Self {
        if s.len() <= INLINE_MAX {
            SharedStr::Inline(CompactString::new(s))
        } else {
            SharedStr::Shared(Arc::from(s))
        }
    }
}

impl From<Arc<str>> for SharedStr {
    fn from(s: Arc<str>) -> Self {
        SharedStr::Shared(s)
    }
}

impl From<&String> for SharedStr {
    fn from(s: &String) -> Self {
        SharedStr::copied(s)
    }
}

impl Default for SharedStr {
    fn default() -> Self {
        SharedStr::Static("")
    }
}

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SharedStr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SharedStr::from)
    }
}

impl schemars::JsonSchema for SharedStr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "String".into()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn short_texts_are_inline_long_ones_shared_and_all_24_bytes() {
        assert_eq!(std::mem::size_of::<SharedStr>(), 24);
        let short = SharedStr::from("k8s-node-1".to_string());
        assert!(matches!(short, SharedStr::Inline(_)));
        assert_eq!(short.clone().as_str(), "k8s-node-1");
        let long = SharedStr::from("x".repeat(INLINE_MAX + 1));
        assert!(matches!(long, SharedStr::Shared(_)));
        assert_eq!(long.len(), INLINE_MAX + 1);
        assert_eq!(SharedStr::from(&"ab".to_string()), SharedStr::from_static("ab"));
    }

    #[test]
    fn static_and_shared_compare_and_hash_alike() {
        let a = SharedStr::from_static("pid");
        let b = SharedStr::from(String::from("pid"));
        assert_eq!(a, b);
        let mut map = HashMap::new();
        map.insert(a, 1);
        assert_eq!(map.get("pid"), Some(&1));
        assert_eq!(map.get(&b), Some(&1));
    }
}
