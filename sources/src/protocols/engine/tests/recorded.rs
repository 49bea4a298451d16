//! Real conversations recorded by `fixtures/record.py` (one line per
//! recv(): `> hex` from the client, `< hex` from the server), and
//! connections on the ports and transports they need.

use std::net::SocketAddr;

use super::super::super::model::{ConnId, ConnInfo, Direction, Role};

/// One recorded read: from the client, and its bytes.
pub struct Read {
    pub from_client: bool,
    pub bytes: Vec<u8>,
}

/// The reads of a fixture file's text.
pub fn reads(text: &str) -> Vec<Read> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let (mark, hex) = line.split_once(' ').expect("`> hex` or `< hex`");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            Read {
                from_client: mark == ">",
                bytes,
            }
        })
        .collect()
}

/// The direction a client's bytes take as seen from `role`'s process
/// (an unknown role is traced like the client).
pub fn client_direction(role: Role) -> Direction {
    match role {
        Role::Server => Direction::Ingress,
        _ => Direction::Egress,
    }
}

/// A connection of the `role` side to a server on `port`; `datagram` for UDP.
pub fn conn(id: ConnId, role: Role, port: u16, datagram: bool) -> ConnInfo {
    let mut server: SocketAddr = super::SERVER.parse().unwrap();
    server.set_port(port);
    let client: SocketAddr = super::CLIENT.parse().unwrap();
    let (local, remote) = match role {
        Role::Client => (client, server),
        _ => (server, client),
    };
    ConnInfo {
        id,
        role,
        local: Some(local),
        remote: Some(remote),
        comm: "app".into(),
        cgroup_id: 4242,
        preexisting: false,
        datagram,
    }
}
