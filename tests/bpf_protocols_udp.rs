//! `source "protocols"`'s datagram capture against the real kernel (needs
//! root): UDP sockets to or from a DNS port are captured one datagram per
//! record, each with the address the call named (sendto's destination,
//! recvfrom's source), through connected and unconnected sockets and
//! `sendmmsg` (glibc's resolver sends A and AAAA together that way); UDP
//! to other ports is not captured at all.
//!
//! With `SONDE_REQUIRE_BPF=1` a machine that cannot load BPF fails the
//! test; without it it prints why and passes.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use common::tracer::capture_into;

use sonde_core::event::Timestamp;
use sonde_ebpf::testing::bpf_available_or_skip;
use sonde_sources::protocols::bpf::{Options, ProtocolPrograms};
use sonde_sources::protocols::capture::Consumer;
use sonde_sources::protocols::model::{Chunk, ConnId, ConnInfo, Direction};

/// One captured datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Datagram {
    conn: ConnId,
    egress: bool,
    data: Vec<u8>,
    length: u32,
    peer: Option<SocketAddr>,
}

#[derive(Default)]
struct Recorded {
    infos: Vec<ConnInfo>,
    datagrams: Vec<Datagram>,
}

impl Consumer for Recorded {
    fn open(&mut self, info: ConnInfo) {
        self.infos.push(info);
    }
    fn data(&mut self, chunk: Chunk<'_>) {
        self.datagrams.push(Datagram {
            conn: chunk.conn,
            egress: chunk.direction == Direction::Egress,
            data: chunk.data.to_vec(),
            length: chunk.length,
            peer: chunk.peer,
        });
    }
    fn close(&mut self, _id: ConnId, _at: Timestamp) {}
}

/// Sends `messages` in one `sendmmsg` call on a connected socket.
fn sendmmsg(socket: &UdpSocket, messages: &[&[u8]]) {
    let mut iovecs: Vec<libc::iovec> = messages
        .iter()
        .map(|m| libc::iovec {
            iov_base: m.as_ptr() as *mut libc::c_void,
            iov_len: m.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovecs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero mmsghdr is valid (no name, no control).
            let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
            header
        })
        .collect();
    // SAFETY: `headers` points at `iovecs`, which point at `messages`; all
    // outlive the call.
    let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), headers.len() as u32, 0) };
    assert_eq!(
        sent,
        messages.len() as i32,
        "sendmmsg: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn datagrams_to_a_dns_port_are_captured_whole_with_their_peers() {
    if !bpf_available_or_skip("datagrams_to_a_dns_port_are_captured_whole_with_their_peers") {
        return;
    }
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    let mut programs = ProtocolPrograms::load(&Options {
        protocols: vec!["dns".into()],
        dns_ports: vec![server_addr.port()],
        exclude_self: false,
        ..Options::default()
    })
    .expect("load");
    let mut records = programs.take_records().unwrap();

    // Not a DNS port on either end: never captured.
    let other_a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other_b = UdpSocket::bind("127.0.0.1:0").unwrap();
    other_a.send_to(b"not dns", other_b.local_addr().unwrap()).unwrap();
    let mut buf = [0u8; 8192];
    other_b.recv_from(&mut buf).unwrap();

    let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.connect(server_addr).unwrap();
    let unconnected = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (connected_addr, unconnected_addr) = (connected.local_addr().unwrap(), unconnected.local_addr().unwrap());
    connected.send(b"query-1 from a connected socket").unwrap();
    unconnected.send_to(b"query-2 by sendto", server_addr).unwrap();
    sendmmsg(&connected, &[b"query-3 (A)", b"query-4 (AAAA)"]);
    let big = vec![b'x'; 6000];
    unconnected.send_to(&big, server_addr).unwrap();
    let mut received = Vec::new();
    for _ in 0..5 {
        let (n, from) = server.recv_from(&mut buf).unwrap();
        let reply = [b"answer to ".as_slice(), &buf[..n.min(16)]].concat();
        server.send_to(&reply, from).unwrap();
        received.push((buf[..n.min(64)].to_vec(), n, from));
    }
    for socket in [&connected, &unconnected] {
        let mut got = 0;
        while got < if std::ptr::eq(socket, &connected) { 3 } else { 2 } {
            socket.recv_from(&mut buf).unwrap();
            got += 1;
        }
    }
    let mut recorded = Recorded::default();
    capture_into(&mut records, Duration::from_secs(1), &mut recorded);
    drop(programs);

    let pid = std::process::id();
    let ours: Vec<&ConnInfo> = recorded.infos.iter().filter(|i| i.id.pid == pid).collect();
    for other in [&other_a, &other_b] {
        let port = other.local_addr().unwrap().port();
        assert!(
            !ours.iter().any(|i| i.local.map(|a| a.port()) == Some(port)),
            "a socket with no DNS port was captured: {ours:?}"
        );
    }
    let info_of = |addr: SocketAddr| {
        *ours
            .iter()
            .find(|i| i.local.map(|a| a.port()) == Some(addr.port()))
            .unwrap_or_else(|| panic!("no connection for {addr}: {ours:?}"))
    };
    let server_info = info_of(server_addr);
    let connected_info = info_of(connected_addr);
    let unconnected_info = info_of(unconnected_addr);
    for info in [server_info, connected_info, unconnected_info] {
        assert!(info.datagram, "{info:?}");
    }
    assert_eq!(
        connected_info.remote,
        Some(server_addr),
        "a connected socket's other end"
    );
    assert_eq!(unconnected_info.remote, None, "an unconnected socket has no other end");
    assert_eq!(server_info.remote, None);

    let of = |id: ConnId, egress: bool| -> Vec<&Datagram> {
        recorded
            .datagrams
            .iter()
            .filter(|d| d.conn == id && d.egress == egress)
            .collect()
    };
    // The server saw five datagrams, each from its sender, each whole.
    let server_in = of(server_info.id, false);
    assert_eq!(server_in.len(), 5, "{server_in:?}");
    for (datagram, (prefix, n, from)) in server_in.iter().zip(&received) {
        assert_eq!(datagram.length as usize, *n);
        assert_eq!(datagram.data[..prefix.len()], prefix[..]);
        assert_eq!(datagram.peer, Some(*from), "recvfrom's source");
    }
    let big_in = server_in
        .iter()
        .find(|d| d.length == 6000)
        .expect("the 6000-byte datagram");
    assert_eq!(big_in.data.len(), 4096, "captured up to capture_bytes");
    let server_out = of(server_info.id, true);
    assert_eq!(server_out.len(), 5);
    for (datagram, (_, _, from)) in server_out.iter().zip(&received) {
        assert_eq!(datagram.peer, Some(*from), "sendto's destination");
    }
    // The connected client: one send and one sendmmsg of two messages,
    // three records; no address named by the calls.
    let sent: Vec<Vec<u8>> = of(connected_info.id, true).iter().map(|d| d.data.clone()).collect();
    assert_eq!(
        sent,
        [
            b"query-1 from a connected socket".to_vec(),
            b"query-3 (A)".to_vec(),
            b"query-4 (AAAA)".to_vec()
        ]
    );
    assert_eq!(of(connected_info.id, false).len(), 3, "three answers read");
    // The unconnected client names the server in each sendto.
    let sent = of(unconnected_info.id, true);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|d| d.peer == Some(server_addr)), "{sent:?}");
    let answers = of(unconnected_info.id, false);
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|d| d.peer == Some(server_addr)), "{answers:?}");
}
