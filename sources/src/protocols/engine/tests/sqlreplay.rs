//! Replaying recorded database conversations (`fixtures/`) through the engine.

use super::super::super::model::{ConnId, Direction, Role};
use super::super::{Protocol, Settings};
use super::*;

/// The literals of the recorded workloads: none may appear in any span.
pub const LITERALS: &[&str] = &[
    "987654321",
    "123456789",
    "Zorblax",
    "zorblax@example.com",
    "Quentin",
    "hunter2",
    "4242.42",
    "Glorbnik",
    "Trundle",
    "555001",
    "secretpw",
];

/// (from the client, bytes) per recorded `recv()`.
pub fn lines(fixture: &str) -> Vec<(bool, Vec<u8>)> {
    fixture
        .lines()
        .filter_map(|line| {
            let (tag, hex) = line.split_once(' ')?;
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            Some((tag == ">", bytes))
        })
        .collect()
}

/// Settings with every database protocol on.
pub fn settings() -> Settings {
    Settings {
        protocols: Protocol::ALL.to_vec(),
        ..Settings::default()
    }
}

/// Which way the client's bytes go for a process of `role`.
pub fn client_direction(role: Role) -> Direction {
    match role {
        Role::Server => Direction::Ingress,
        _ => Direction::Egress,
    }
}

/// Replays `lines` on connection `c` of a harness.
pub fn replay(h: &mut Harness, c: ConnId, role: Role, lines: &[(bool, Vec<u8>)]) {
    let out = client_direction(role);
    for (client, bytes) in lines {
        let direction = if *client { out } else { out.opposite() };
        h.send(c, direction, bytes);
    }
}

/// A harness that replayed `fixture` on one connection seen from `role`, closed.
pub fn replayed(fixture: &str, role: Role) -> Harness {
    let c = id(1, 3);
    let mut h = Harness::new(settings());
    h.engine.open(info(c, role));
    replay(&mut h, c, role, &lines(fixture));
    h.close(c);
    h
}

/// Every text field of every span holds none of [`LITERALS`].
pub fn assert_no_literal(h: &Harness) {
    for span in h.spans() {
        for (key, value) in span.fields.iter() {
            let text = format!("{value:?}");
            for literal in LITERALS {
                assert!(!text.contains(literal), "{key} = {text} holds {literal}");
            }
        }
        for literal in LITERALS {
            assert!(!span.name.contains(literal), "{} holds {literal}", span.name);
        }
    }
}

/// (operation, status code, rows) of each span.
pub fn outcomes(h: &Harness) -> Vec<(Option<String>, Option<String>, Option<i64>)> {
    h.spans()
        .iter()
        .map(|s| {
            (
                field(s, "db.operation.name").map(str::to_owned),
                field(s, "db.response.status_code").map(str::to_owned),
                int(s, "db.response.returned_rows"),
            )
        })
        .collect()
}
