//! Paced clients: each connection sends one request, waits for its answer,
//! and sends the next at its turn, so the rate is fixed whatever the
//! server's speed (up to what it can answer). PostgreSQL's load is
//! pgbench's own pacing (`-R`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What one paced run did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Done {
    /// Requests answered.
    pub requests: f64,
    /// Seconds it ran.
    pub seconds: f64,
}

/// Runs `connections` threads, each calling `one` at `rate / connections`
/// per second for `seconds`; returns the requests answered.
fn paced<C: Send + 'static>(
    connections: u32,
    rate: f64,
    seconds: u32,
    connect: impl Fn() -> Result<C>,
    one: fn(&mut C) -> Result<()>,
) -> Result<Done> {
    let period = Duration::from_secs_f64(f64::from(connections) / rate);
    let started = Instant::now();
    let end = started + Duration::from_secs(u64::from(seconds));
    let mut threads = Vec::new();
    for i in 0..connections {
        let mut client = connect()?;
        // Spread the connections' turns over one period.
        let first = started + period.mul_f64(f64::from(i) / f64::from(connections));
        threads.push(std::thread::spawn(move || -> Result<u64> {
            let (mut next, mut answered) = (first, 0u64);
            while next < end {
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                }
                one(&mut client)?;
                answered += 1;
                // Late answers do not bunch the next requests up.
                next = (next + period).max(Instant::now());
            }
            Ok(answered)
        }));
    }
    let mut requests = 0;
    for thread in threads {
        requests += thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok(Done {
        requests: requests as f64,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A Redis connection: `GET bench:key` (after `AUTH`).
pub struct RedisClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RedisClient {
    pub fn connect(port: u16, password: &str) -> Result<RedisClient> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        let mut client = RedisClient {
            stream,
            buf: vec![0; 4096],
        };
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        client.stream.write_all(auth.as_bytes())?;
        client.reply()?;
        Ok(client)
    }

    /// One `GET`.
    pub fn get(&mut self) -> Result<()> {
        self.stream.write_all(b"*2\r\n$3\r\nGET\r\n$9\r\nbench:key\r\n")?;
        self.reply()
    }

    /// Reads one short reply (`+OK`, `$-1`, `$5 value`): one read holds it.
    fn reply(&mut self) -> Result<()> {
        let n = self.stream.read(&mut self.buf)?;
        if n == 0 || self.buf[0] == b'-' {
            bail!("redis answered {:?}", String::from_utf8_lossy(&self.buf[..n]));
        }
        Ok(())
    }
}

/// `GET`s at `rate`/s on `connections` connections.
pub fn redis(port: u16, password: &str, connections: u32, rate: f64, seconds: u32) -> Result<Done> {
    let password = password.to_string();
    paced(
        connections,
        rate,
        seconds,
        move || RedisClient::connect(port, &password),
        RedisClient::get,
    )
}

/// A connected UDP socket asking one A question.
pub struct DnsClient {
    socket: UdpSocket,
    id: u16,
    buf: [u8; 512],
}

impl DnsClient {
    pub fn connect(server: SocketAddr) -> Result<DnsClient> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        Ok(DnsClient {
            socket,
            id: 0,
            buf: [0; 512],
        })
    }

    fn query(&mut self) -> Result<()> {
        self.id = self.id.wrapping_add(1);
        let mut message = Vec::with_capacity(40);
        message.extend_from_slice(&self.id.to_be_bytes());
        // RD, one question, no other records.
        message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in ["bench", "example", "test"] {
            message.push(label.len() as u8);
            message.extend_from_slice(label.as_bytes());
        }
        message.extend_from_slice(&[0, 0, 1, 0, 1]);
        self.socket.send(&message)?;
        loop {
            let n = self.socket.recv(&mut self.buf).context("no DNS answer in 2 s")?;
            if n >= 2 && self.buf[..2] == self.id.to_be_bytes() {
                return Ok(());
            }
        }
    }
}

/// A queries at `rate`/s on `connections` sockets.
pub fn dns(server: SocketAddr, connections: u32, rate: f64, seconds: u32) -> Result<Done> {
    paced(
        connections,
        rate,
        seconds,
        move || DnsClient::connect(server),
        DnsClient::query,
    )
}
