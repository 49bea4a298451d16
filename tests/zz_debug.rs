mod common;
use common::servers::{Mariadb, Postgres, Redis, REDIS_PASSWORD};
use sonde_core::event::Timestamp;
use sonde_sources::clock::Clock;
use sonde_sources::protocols::bpf::{Options, ProtocolPrograms};
use sonde_sources::protocols::capture::{Capture, Consumer, Followups};
use sonde_sources::protocols::listeners::Listeners;
use sonde_sources::protocols::model::{Chunk, ConnId, ConnInfo};
use sonde_sources::protocols::tls::TlsFinder;
struct P(sonde_sources::protocols::engine::Engine, Vec<sonde_core::event::Event>);
impl Consumer for P {
    fn open(&mut self, info: ConnInfo) {
        eprintln!("OPEN {info:?}");
        self.0.open(info);
    }
    fn data(&mut self, c: Chunk<'_>) {
        eprintln!(
            "DATA {:?} {:?} pos {} len {} tls {} {:?}",
            c.conn.fd,
            c.direction,
            c.position,
            c.length,
            c.tls,
            String::from_utf8_lossy(&c.data[..c.data.len().min(60)])
        );
        self.0.data(c, &mut self.1);
    }
    fn close(&mut self, id: ConnId, at: Timestamp) {
        eprintln!("CLOSE {id:?}");
        self.0.close(id, at, &mut self.1);
    }
}
#[test]
fn dbg() {
    let pg = Postgres::start();
    let mut programs = ProtocolPrograms::load(&Options {
        protocols: vec!["postgresql".into()],
        ports: vec![pg.port],
        ..Options::default()
    })
    .unwrap();
    let mut finder = TlsFinder::default();
    for f in finder.find_all() {
        eprintln!("attach {:?} -> {:?}", f, programs.attach_tls(&f.path));
    }
    let mut records = programs.take_records().unwrap();
    pg.psql("SELECT 'tls-literal-secret', 4242424", "require");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut capture = Capture::default();
    let mut l = Listeners::read();
    let mut f = Followups::default();
    let clock = Clock::now();
    let settings = sonde_sources::protocols::engine::Settings {
        protocols: vec![sonde_sources::protocols::engine::Protocol::Postgres],
        ..Default::default()
    };
    let mut p = P(sonde_sources::protocols::engine::Engine::new(settings), Vec::new());
    records.drain(usize::MAX, |r| capture.handle(r, &clock, &mut l, &mut p, &mut f));
    for e in &p.1 {
        eprintln!("EVENT {e:?}");
    }
    eprintln!("COUNTERS {:?}", p.0.counters());
    eprintln!("encrypted followups {:?}", f.encrypted);
}

#[test]
fn dbg_mysql() {
    let db = Mariadb::start();
    let mut programs = ProtocolPrograms::load(&Options {
        protocols: vec!["mysql".into()],
        ports: vec![db.port],
        ..Options::default()
    })
    .unwrap();
    let mut records = programs.take_records().unwrap();
    let python = format!(
        "import mysql.connector\n\
         c = mysql.connector.connect(host='127.0.0.1', port={}, user='sonde', password='sonde-pw', database='mysql', ssl_disabled=True)\n\
         cur = c.cursor(prepared=True)\n\
         for i in range(2):\n    cur.execute('SELECT user FROM user WHERE 1 = %s', (i,))\n    cur.fetchall()\n\
         c.close()\n",
        db.port
    );
    let out = std::process::Command::new(".venv/bin/python")
        .args(["-c", &python])
        .output()
        .unwrap();
    eprintln!("python: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut capture = Capture::default();
    let mut l = Listeners::read();
    let mut f = Followups::default();
    let clock = Clock::now();
    let settings = sonde_sources::protocols::engine::Settings {
        protocols: vec![sonde_sources::protocols::engine::Protocol::Mysql],
        ..Default::default()
    };
    let mut p = P(sonde_sources::protocols::engine::Engine::new(settings), Vec::new());
    records.drain(usize::MAX, |r| capture.handle(r, &clock, &mut l, &mut p, &mut f));
    for e in &p.1 {
        if let sonde_core::event::Event::Span(s) = e {
            eprintln!("SPAN {:?} {} {:?}", s.kind, s.name, s.fields.get("db.query.text"));
        }
    }
    eprintln!("COUNTERS {:?}", p.0.counters());
}

#[test]
fn dbg_redis() {
    let redis = Redis::start();
    let mut programs = ProtocolPrograms::load(&Options {
        protocols: vec!["redis".into()],
        ports: vec![redis.port],
        ..Options::default()
    })
    .unwrap();
    let mut records = programs.take_records().unwrap();
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &redis.port.to_string(), "-a", REDIS_PASSWORD])
        .args(["-n", "32", "-P", "16", "-c", "2", "-t", "get", "-q"])
        .output()
        .unwrap();
    eprintln!("bench: {:?}", out.status);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut capture = Capture::default();
    let mut l = Listeners::read();
    let mut f = Followups::default();
    let clock = Clock::now();
    let settings = sonde_sources::protocols::engine::Settings {
        protocols: vec![sonde_sources::protocols::engine::Protocol::Redis],
        ..Default::default()
    };
    let mut p = P(sonde_sources::protocols::engine::Engine::new(settings), Vec::new());
    records.drain(usize::MAX, |r| capture.handle(r, &clock, &mut l, &mut p, &mut f));
    for e in &p.1 {
        if let sonde_core::event::Event::Span(s) = e {
            if s.name.as_str() != "GET" {
                eprintln!("SPAN {:?} {} {:?}", s.kind, s.name, s.fields.get("db.query.text"));
            }
        }
    }
    eprintln!("COUNTERS {:?}", p.0.counters());
    eprintln!("STATS {:?}", redis.commandstats());
}
