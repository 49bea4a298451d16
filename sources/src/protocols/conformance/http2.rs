//! HTTP/2 in clear text (prior knowledge): a gRPC session recorded from
//! grpcio (three unary calls, HPACK's dynamic table in use from the second
//! on), replayed byte for byte between a server and a client of this
//! process's own, must give three server and three client spans with the
//! method and the status code of the trailers.

use sonde_core::event::{Span, SpanKind, Value};
use sonde_ebpf::conformance::{ensure, CheckError};

use super::ours;

/// Calls in the recording.
pub const CALLS: usize = 3;

fn text(span: &Span, key: &str) -> String {
    match span.fields.get(key) {
        Some(Value::Str(s)) => s.to_string(),
        Some(Value::Int(i)) => i.to_string(),
        _ => String::new(),
    }
}

/// Checks the spans of the replay's server on `port`.
pub fn verify(spans: &[Span], port: u16) -> Result<String, CheckError> {
    let expected = vec![("demo.Greeter".to_string(), "SayHello".to_string(), "0".to_string()); CALLS];
    for kind in [SpanKind::Server, SpanKind::Client] {
        let got: Vec<(String, String, String)> = spans
            .iter()
            .filter(|s| ours(s, port) && s.kind == kind)
            .map(|s| {
                (
                    text(s, "rpc.service"),
                    text(s, "rpc.method"),
                    text(s, "rpc.grpc.status_code"),
                )
            })
            .collect();
        ensure(got == expected, || {
            format!("the h2c gRPC replay gave {kind:?} spans {got:?}, not {expected:?}")
        })?;
    }
    Ok(format!(
        "gRPC over h2c: {CALLS} server and {CALLS} client spans with method and status"
    ))
}
