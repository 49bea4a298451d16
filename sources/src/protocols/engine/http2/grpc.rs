//! gRPC on HTTP/2: length-prefixed messages counted in DATA content (a
//! 1-byte flag and a 4-byte length before each message), and the service
//! and method from `:path` (`/package.Service/Method`).

use super::super::reassembly::Bytes;

/// Counts messages in one direction of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Messages {
    /// Messages started.
    pub count: u32,
    /// A hole hid a message prefix: `count` is a lower bound.
    pub uncertain: bool,
    prefix: [u8; 5],
    have: u8,
    skip: u64,
}

impl Messages {
    /// Takes DATA content (or a hole in it).
    pub fn feed(&mut self, bytes: Bytes<'_>) {
        match bytes {
            Bytes::Hole(n) => {
                if self.have == 0 && n <= self.skip {
                    self.skip -= n;
                } else {
                    // Where the next message starts is no longer known.
                    self.uncertain = true;
                    self.skip = u64::MAX;
                    self.have = 0;
                }
            }
            Bytes::Data(mut data) => {
                while !data.is_empty() {
                    if self.skip > 0 {
                        let n = (data.len() as u64).min(self.skip);
                        self.skip -= n;
                        data = &data[n as usize..];
                        continue;
                    }
                    let n = data.len().min(5 - usize::from(self.have));
                    let have = usize::from(self.have);
                    self.prefix[have..have + n].copy_from_slice(&data[..n]);
                    self.have += n as u8;
                    data = &data[n..];
                    if self.have == 5 {
                        self.have = 0;
                        self.count += 1;
                        let p = self.prefix;
                        self.skip = u64::from(u32::from_be_bytes([p[1], p[2], p[3], p[4]]));
                    }
                }
            }
        }
    }
}

/// `(service, method)` of a gRPC `:path`; `None` when it is not of the
/// `/service/method` form.
pub fn service_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

/// The name of a gRPC status code (`error.type`).
pub fn status_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("_OTHER")
}

/// Whether a status is an error for this side: the OpenTelemetry rule is
/// any non-OK status for clients, and for servers only the codes that say
/// the server failed.
pub fn is_error(code: Option<u32>, server: bool) -> bool {
    match code {
        None | Some(0) => false,
        Some(code) if server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
        Some(_) => true,
    }
}
