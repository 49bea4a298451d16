//! Bytes of other protocols, and noise, on database ports: never spans.

use super::super::super::model::{Direction::*, Role};
use super::super::{Protocol, Settings};
use super::sqlreplay::lines;
use super::*;

fn engine_on(port: u16) -> (Harness, super::super::super::model::ConnId) {
    let settings = Settings {
        protocols: vec![Protocol::Postgres, Protocol::Mysql],
        ..Settings::default()
    };
    let mut h = Harness::new(settings);
    let c = id(1, 3);
    let mut conn = info(c, Role::Client);
    conn.remote = Some(format!("10.0.0.1:{port}").parse().unwrap());
    h.engine.open(conn);
    (h, c)
}

#[test]
fn http_tls_resp_and_noise_on_database_ports_give_nothing() {
    let mut rng = fastrand::Rng::with_seed(5);
    let noise: Vec<u8> = (0..4000).map(|_| rng.u8(..)).collect();
    let client_hello =
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefghijklmnopqrstuvwxyz012345\x00\x00\x02\x13\x01\x01\x00"
            .to_vec();
    let streams: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (get("/"), ok(200, "hello")),
        (client_hello, b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03".to_vec()),
        (b"*1\r\n$4\r\nPING\r\n".to_vec(), b"+PONG\r\n".to_vec()),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n".to_vec(),
            b"+OK\r\n".to_vec(),
        ),
        (noise[..2000].to_vec(), noise[2000..].to_vec()),
    ];
    for port in [5432, 3306] {
        for (request, response) in &streams {
            let (mut h, c) = engine_on(port);
            for _ in 0..9 {
                h.send(c, Egress, request);
                h.send(c, Ingress, response);
            }
            h.close(c);
            assert!(h.spans().is_empty(), "{:?}", String::from_utf8_lossy(request));
            let counters = h.engine.counters();
            assert_eq!(counters.unknown_protocol + counters.misdetected, 1, "{counters:?}");
        }
    }
}

#[test]
fn random_bytes_never_detect_as_a_database() {
    let settings = Settings {
        protocols: vec![Protocol::Postgres, Protocol::Mysql],
        ..Settings::default()
    };
    let mut rng = fastrand::Rng::with_seed(9);
    let clue = |direction| super::super::infer::Clue {
        direction,
        role: Role::Unknown,
        local_port: 5432,
        remote_port: 3306,
        datagram: false,
        dns_port: false,
        joined: false,
    };
    for _ in 0..200_000 {
        let data: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
        for direction in [Egress, Ingress] {
            assert_eq!(
                super::super::infer::detect(&settings, &clue(direction), &data),
                None,
                "{data:?}"
            );
        }
    }
}

#[test]
fn each_protocol_detects_only_its_own_recordings() {
    let settings = Settings {
        protocols: Protocol::ALL.to_vec(),
        ..Settings::default()
    };
    let clue = super::super::infer::Clue {
        direction: Egress,
        role: Role::Unknown,
        local_port: 0,
        remote_port: 0,
        datagram: false,
        dns_port: false,
        joined: false,
    };
    for (fixture, protocol) in [
        (include_str!("fixtures/pg_psql.txt"), Protocol::Postgres),
        (include_str!("fixtures/mariadb_cli.txt"), Protocol::Mysql),
    ] {
        let first = &lines(fixture)[0].1;
        assert_eq!(super::super::infer::detect(&settings, &clue, first), Some(protocol));
    }
}
