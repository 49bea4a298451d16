//! Local TCP ports that are listening, from `/proc/net/tcp{,6}`: a
//! connection found mid-stream (its accept or connect not seen, e.g. it
//! predates the agent) on a listening port is a server's. The tables are
//! read again only when a port is not found, at most once per
//! [`REFRESH_AFTER`]: reading them walks every socket of the namespace
//! (3.6 % of the agent's CPU at 10k requests/s when it was read each second).

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The shortest time between two reads of the tables.
pub const REFRESH_AFTER: Duration = Duration::from_secs(1);

/// `TCP_LISTEN` in `/proc/net/tcp`'s `st` column.
const LISTEN: &str = "0A";

/// The listening ports, refreshed on demand.
#[derive(Debug, Default)]
pub struct Listeners {
    ports: HashSet<u16>,
    read_at: Option<Instant>,
}

impl Listeners {
    /// The ports listening now, in this network namespace.
    pub fn read() -> Self {
        let mut ports = HashSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                ports.extend(listening_ports(&text));
            }
        }
        Listeners {
            ports,
            read_at: Some(Instant::now()),
        }
    }

    /// Whether `port` is listening (the tables are read again when it is
    /// not known to be and they were read long enough ago).
    pub fn is_listening(&mut self, port: u16) -> bool {
        if self.ports.contains(&port) {
            return true;
        }
        if self.read_at.is_none_or(|at| at.elapsed() >= REFRESH_AFTER) {
            *self = Listeners::read();
        }
        self.ports.contains(&port)
    }
}

/// Local ports of the LISTEN rows of a `/proc/net/tcp` table.
pub fn listening_ports(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut columns = line.split_whitespace();
        let local = columns.nth(1)?;
        let state = columns.nth(1)?;
        (state == LISTEN).then_some(())?;
        u16::from_str_radix(local.rsplit(':').next()?, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_rows_give_their_local_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(listening_ports(table).collect::<Vec<_>>(), [80]);
    }

    #[test]
    fn a_listener_of_this_process_is_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(Listeners::read().is_listening(port));
        assert!(
            Listeners::default().is_listening(port),
            "an empty table is read at the first miss"
        );
    }
}
