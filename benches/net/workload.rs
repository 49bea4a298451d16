//! The workload of `cargo xtask bench net`: nginx serving a small file on
//! loopback, driven flat out by wrk (`benches/common/web.rs`), with
//! keep-alive connections or a new connection per request
//! (`Connection: close`, which exercises the connection tracepoints on
//! every request).

use anyhow::Result;

pub use super::common::web::Nginx;
use super::common::web::{self, Load, Run};

/// How wrk connects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connections {
    /// One connection per wrk connection slot, reused for every request.
    KeepAlive,
    /// A new TCP connection per request.
    PerRequest,
}

impl Connections {
    /// Both, in report order.
    pub const ALL: [Connections; 2] = [Connections::KeepAlive, Connections::PerRequest];

    /// How the report names it.
    pub const fn label(self) -> &'static str {
        match self {
            Connections::KeepAlive => "keep-alive",
            Connections::PerRequest => "connection per request",
        }
    }
}

/// Runs wrk flat out (32 connections) against nginx for `seconds`.
pub fn wrk(nginx: &Nginx, connections: Connections, seconds: u32) -> Result<Run> {
    let load = Load {
        connections: 32,
        close: connections == Connections::PerRequest,
        delay_ms: None,
    };
    web::wrk(nginx, load, seconds)
}

// Run by tests/bench_net.rs. Cargo also compiles bench targets with
// `--cfg test` but without libtest, which drops the #[test] functions and
// would leave the import unused.
#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::super::common::web::{parse_p99, parse_requests, parse_requests_per_second};

    #[test]
    fn reads_wrk_requests_per_second() {
        let text = "Running 5s test @ http://127.0.0.1:8080/\n  1 threads and 32 connections\n\
                    Requests/sec:  41234.56\nTransfer/sec:      8.1MB\n";
        assert_eq!(parse_requests_per_second(text), Some(41234.56));
        assert_eq!(parse_requests_per_second("nothing"), None);
        let latency = "  Latency Distribution\n     50%  310.00us\n     99%    2.41ms\n";
        assert!((parse_p99(latency).unwrap() - 2.41e-3).abs() < 1e-12);
        assert!((parse_p99("     99%  812.00us\n").unwrap() - 812e-6).abs() < 1e-12);
        assert_eq!(parse_p99("     99%  nonsense\n"), None);
        assert_eq!(
            parse_requests("  164938 requests in 4.00s, 128.2MB read\n"),
            Some(164938.0)
        );
    }
}
