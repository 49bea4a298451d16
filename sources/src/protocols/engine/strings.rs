//! Text the engine puts on every span again and again — peer addresses,
//! process names, header attribute keys — rendered once and shared
//! (`SharedStr` clones are reference counts), so a span costs few
//! allocations. Bounded: cleared when it grows past [`MAX_ENTRIES`].

use foldhash::HashMap;
use std::net::IpAddr;

use sonde_core::event::SharedStr;

/// Entries kept per table before it is cleared.
pub const MAX_ENTRIES: usize = 4096;

/// The cache.
#[derive(Debug, Default)]
pub struct Strings {
    ips: HashMap<IpAddr, SharedStr>,
    names: HashMap<String, SharedStr>,
    request_headers: HashMap<String, SharedStr>,
    response_headers: HashMap<String, SharedStr>,
    joined: HashMap<(SharedStr, SharedStr), SharedStr>,
}

fn bounded<K, V>(map: &mut HashMap<K, V>) -> &mut HashMap<K, V> {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map
}

impl Strings {
    /// An address as text.
    pub fn ip(&mut self, ip: IpAddr) -> SharedStr {
        if let Some(text) = self.ips.get(&ip) {
            return text.clone();
        }
        let text = SharedStr::from(ip.to_string());
        bounded(&mut self.ips).insert(ip, text.clone());
        text
    }

    /// A process name (or any short text seen often).
    pub fn name(&mut self, name: &str) -> SharedStr {
        if let Some(text) = self.names.get(name) {
            return text.clone();
        }
        let text = SharedStr::from(name.to_string());
        bounded(&mut self.names).insert(name.to_string(), text.clone());
        text
    }

    /// `{first} {second}`: a span name (`GET /api/users/{id}`, `SELECT
    /// shop`), formatted once per distinct pair.
    pub fn joined(&mut self, first: &SharedStr, second: &SharedStr) -> SharedStr {
        let key = (first.clone(), second.clone());
        if let Some(text) = self.joined.get(&key) {
            return text.clone();
        }
        let text = SharedStr::from(format!("{first} {second}"));
        bounded(&mut self.joined).insert(key, text.clone());
        text
    }

    /// `http.request.header.<name>` (`request`) or `http.response.header.<name>`.
    pub fn header_key(&mut self, request: bool, name: &str) -> SharedStr {
        let (table, side) = if request {
            (&mut self.request_headers, "request")
        } else {
            (&mut self.response_headers, "response")
        };
        if let Some(text) = table.get(name) {
            return text.clone();
        }
        let text = SharedStr::from(format!("http.{side}.header.{name}"));
        bounded(table).insert(name.to_string(), text.clone());
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_rendered_once_and_the_tables_stay_bounded() {
        let mut strings = Strings::default();
        let a = strings.ip("10.0.0.1".parse().unwrap());
        assert_eq!(a.as_str(), "10.0.0.1");
        let (get, route) = (SharedStr::from_static("GET"), SharedStr::from("/api/{id}".to_string()));
        assert_eq!(strings.joined(&get, &route).as_str(), "GET /api/{id}");
        assert_eq!(strings.joined(&get, &route).as_str(), "GET /api/{id}");
        assert_eq!(
            strings.header_key(true, "user-agent").as_str(),
            "http.request.header.user-agent"
        );
        assert_eq!(
            strings.header_key(false, "content-type").as_str(),
            "http.response.header.content-type"
        );
        for i in 0..(MAX_ENTRIES as u32 + 10) {
            strings.ip(IpAddr::from(i.to_be_bytes()));
        }
        assert!(strings.ips.len() <= MAX_ENTRIES);
    }
}
