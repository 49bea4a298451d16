//! What the programs are loaded with: load-time constants and the
//! in-kernel filters.

use sonde_ebpf::aya::maps::{HashMap, MapData};
use sonde_ebpf::loader::Object;
use sonde_ebpf::LoadError;

use super::abi::{PROTO_DNS, PROTO_HTTP1, PROTO_HTTP2, PROTO_MAX_DNS_PORTS, PROTO_MYSQL, PROTO_POSTGRES, PROTO_REDIS};

/// The programs' options (from the source's config).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Protocol names (`"http"` …) whose bytes pass the kernel's gate.
    pub protocols: Vec<String>,
    /// Bytes copied per call.
    pub capture_bytes: u32,
    /// Only connections with one of these local or remote ports (empty: all).
    pub ports: Vec<u16>,
    /// Process names never traced.
    pub exclude_comm: Vec<String>,
    /// Capacity of the connection map.
    pub max_connections: u32,
    /// Ring buffer size, bytes (a power of two).
    pub ring_bytes: u32,
    /// Leave this process's own traffic out (its exporters). Only the
    /// kernel check turns it off, to trace a workload of its own.
    pub exclude_self: bool,
    /// Ports of DNS servers: UDP datagrams (and TCP connections) to or
    /// from them are captured when `dns` is enabled. At most four.
    pub dns_ports: Vec<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            protocols: vec!["http".to_string()],
            capture_bytes: 4096,
            ports: Vec::new(),
            exclude_comm: Vec::new(),
            max_connections: 16384,
            ring_bytes: 8 * 1024 * 1024,
            exclude_self: true,
            dns_ports: vec![53],
        }
    }
}

/// The filter maps, held for as long as the programs.
pub(super) struct Filters {
    _ports: HashMap<MapData, u16, u8>,
    _comms: HashMap<MapData, [u8; 16], u8>,
}

/// The load-time constants, typed as the programs declare them.
pub(super) struct KernelSettings {
    pub capture_bytes: u32,
    pub protocols: u32,
    pub self_tgid: u32,
    pub filter_ports: u8,
    pub filter_comm: u8,
    pub wakeup_bytes: u64,
    pub ring_bytes: u32,
    pub dns_ports: [u16; PROTO_MAX_DNS_PORTS as usize],
}

impl Options {
    pub(super) fn kernel_settings(&self) -> KernelSettings {
        let protocols = self
            .protocols
            .iter()
            .map(|p| match p.as_str() {
                "http" => PROTO_HTTP1,
                "http2" => PROTO_HTTP2,
                "postgresql" => PROTO_POSTGRES,
                "mysql" => PROTO_MYSQL,
                "redis" => PROTO_REDIS,
                "dns" => PROTO_DNS,
                _ => 0,
            })
            .fold(0, |a, b| a | b);
        let mut dns_ports = [0; PROTO_MAX_DNS_PORTS as usize];
        for (slot, port) in dns_ports.iter_mut().zip(&self.dns_ports) {
            *slot = *port;
        }
        KernelSettings {
            capture_bytes: self.capture_bytes,
            protocols,
            // The agent's own traffic (its exporters) is never traced.
            self_tgid: if self.exclude_self { std::process::id() } else { 0 },
            filter_ports: u8::from(!self.ports.is_empty()),
            filter_comm: u8::from(!self.exclude_comm.is_empty()),
            // Wake user space at each quarter of the ring it fills.
            wakeup_bytes: u64::from(self.ring_bytes / 4),
            ring_bytes: self.ring_bytes,
            dns_ports,
        }
    }

    /// Fills the port and process-name filter maps. The handles must be
    /// kept until the programs are loaded (their fds are in the programs'
    /// instructions).
    pub(super) fn fill_filters(&self, object: &mut Object) -> Result<Filters, LoadError> {
        let map_error = |map: &'static str| {
            move |source| LoadError::Map {
                object: super::OBJECT,
                map,
                source: Box::new(source),
            }
        };
        let mut ports: HashMap<_, u16, u8> = object.take_map("proto_ports")?;
        for port in &self.ports {
            ports.insert(port, 1, 0).map_err(map_error("proto_ports"))?;
        }
        let mut comms: HashMap<_, [u8; 16], u8> = object.take_map("proto_exclude_comm")?;
        for name in &self.exclude_comm {
            let mut comm = [0u8; 16];
            let bytes = name.as_bytes();
            let n = bytes.len().min(15);
            comm[..n].copy_from_slice(&bytes[..n]);
            comms.insert(comm, 1, 0).map_err(map_error("proto_exclude_comm"))?;
        }
        Ok(Filters {
            _ports: ports,
            _comms: comms,
        })
    }
}
