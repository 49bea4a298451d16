/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * protocols: copying the bytes of one call into a record, the protocol
 * gate, and sending the record.
 */
#ifndef PROTO_CAPTURE_H
#define PROTO_CAPTURE_H

struct iovec___sonde {
	__u64 base;
	__u64 len;
};

/* struct user_msghdr: msg_iov at 16, msg_iovlen at 24 (all ABIs). */
struct msghdr_iov___sonde {
	__u64 name;
	__u64 namelen;
	__u64 iov;
	__u64 iovlen;
};

/* struct mmsghdr: a 56-byte user_msghdr, then msg_len. */
#define MMSGHDR_SIZE 64
#define MMSGHDR_LEN_OFFSET 56

static __always_inline struct scratch *scratch_slot(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&proto_scratch, &cpu);
}

#define WORD(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/* Whether `d` starts an HTTP/1.x request or response. */
static __always_inline int looks_like_http1(const __u8 *d, __u32 n)
{
	__u32 w;

	if (n < 4)
		return 0;
	w = WORD(d[0], d[1], d[2], d[3]);
	return w == WORD('G', 'E', 'T', ' ') || w == WORD('P', 'O', 'S', 'T') || w == WORD('P', 'U', 'T', ' ') ||
	       w == WORD('H', 'E', 'A', 'D') || w == WORD('D', 'E', 'L', 'E') || w == WORD('P', 'A', 'T', 'C') ||
	       w == WORD('O', 'P', 'T', 'I') || w == WORD('C', 'O', 'N', 'N') || w == WORD('T', 'R', 'A', 'C') ||
	       w == WORD('H', 'T', 'T', 'P');
}

/* Whether `d` starts a TLS record (content type 20..23, version 3.x). */
static __always_inline int looks_like_tls(const __u8 *d, __u32 n)
{
	return n >= 3 && d[0] >= 20 && d[0] <= 23 && d[1] == 3 && d[2] <= 4;
}

#define BE32(d) ((__u32)(d)[0] << 24 | (__u32)(d)[1] << 16 | (__u32)(d)[2] << 8 | (__u32)(d)[3])
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/*
 * PostgreSQL, from the client: a startup packet (length, then protocol
 * 3.0, SSLRequest, GSSENCRequest or CancelRequest), or, on a connection
 * joined mid-way, a simple query or Parse ('Q'/'P', a length < 16 MiB).
 * User space confirms; a connection it refuses is ignored from then on.
 */
static __always_inline int looks_like_postgres(const __u8 *d, __u32 n)
{
	__u32 len, code;

	if (n < 5)
		return 0;
	if ((d[0] == 'Q' || d[0] == 'P') && d[1] == 0) {
		len = BE32(d + 1);
		return len >= 5 && len < (1 << 24);
	}
	if (n < 8)
		return 0;
	len = BE32(d);
	code = BE32(d + 4);
	return len >= 8 && len <= 10000 &&
	       (code == 0x00030000 || code == 80877103 || code == 80877104 || code == 80877102);
}

/*
 * MySQL/MariaDB: the server's greeting (sequence 0, protocol 10, a version
 * starting with a digit), or a client command starting a sequence
 * (COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_INIT_DB). Clients
 * that read a packet's 4-byte header first (Python's, Java's) show only
 * the greeting's header at their first read: a client reading exactly a
 * header of sequence 0 and a greeting's size passes too.
 */
static __always_inline int looks_like_mysql(const struct conn *c, const __u8 *d, __u32 n, __u8 dir)
{
	__u32 len;

	if (n < 4 || d[3] != 0)
		return 0;
	len = (__u32)d[0] | (__u32)d[1] << 8 | (__u32)d[2] << 16;
	if (n == 4)
		return dir == PROTO_DIR_INGRESS && c->peer.role == PROTO_ROLE_CLIENT && len >= 20 && len < 1024;
	if (n < 6)
		return 0;
	if (d[4] == 0x0a)
		return len >= 20 && len < 1024 && IS_DIGIT(d[5]);
	if (d[4] == 0x03 || d[4] == 0x16 || d[4] == 0x02)
		return len >= 2;
	return d[4] == 0x17 && len >= 10;
}

/* Redis: a command as a RESP array of bulk strings (`*3\r\n$3\r\nSET`). */
static __always_inline int looks_like_redis(const __u8 *d, __u32 n)
{
	if (n < 6 || d[0] != '*' || d[1] < '1' || d[1] > '9')
		return 0;
	if (d[2] == '\r')
		return d[3] == '\n' && d[4] == '$';
	return IS_DIGIT(d[2]) && d[3] == '\r' && d[4] == '\n' && d[5] == '$';
}

/*
 * HTTP/2: the client preface (`PRI * HTTP/2.0`); a SETTINGS frame (a
 * server may write its own before reading the client's preface); or, on
 * a connection found already open, a frame header of a type a peer sends
 * unprompted (DATA, HEADERS, PING, WINDOW_UPDATE). Each with the reserved
 * bit clear, a length under 64 KiB and the stream rule of its type. User
 * space checks the frames that follow.
 */
static __always_inline int looks_like_http2(const struct conn *c, const __u8 *d, __u32 n)
{
	__u32 stream;

	if (n >= 4 && WORD(d[0], d[1], d[2], d[3]) == WORD('P', 'R', 'I', ' '))
		return 1;
	if (n < 9 || d[0] != 0 || (d[5] & 0x80))
		return 0;
	stream = BE32(d + 5);
	if (d[3] == 4) /* SETTINGS */
		return stream == 0 && d[4] <= 1 && ((__u32)d[1] << 8 | d[2]) % 6 == 0;
	if (!c->peer.discovered)
		return 0;
	switch (d[3]) {
	case 0: /* DATA */
	case 1: /* HEADERS */
		return stream != 0;
	case 6: /* PING */
		return stream == 0 && d[1] == 0 && d[2] == 8;
	case 8: /* WINDOW_UPDATE */
		return d[1] == 0 && d[2] == 4;
	}
	return 0;
}

/* The PROTO_* bit of the first enabled stream protocol `d` looks like. */
static __always_inline __u8 stream_protocol(const struct conn *c, const __u8 *d, __u32 n, __u8 dir)
{
	if ((protocols & PROTO_HTTP2) && looks_like_http2(c, d, n))
		return PROTO_HTTP2;
	if ((protocols & PROTO_HTTP1) && looks_like_http1(d, n))
		return PROTO_HTTP1;
	if ((protocols & PROTO_REDIS) && looks_like_redis(d, n))
		return PROTO_REDIS;
	if ((protocols & PROTO_POSTGRES) && looks_like_postgres(d, n))
		return PROTO_POSTGRES;
	if ((protocols & PROTO_MYSQL) && looks_like_mysql(c, d, n, dir))
		return PROTO_MYSQL;
	/* DNS over TCP: by port, user space checks the messages. */
	if ((protocols & PROTO_DNS) && (dns_port(c->peer.sport) || dns_port(c->peer.dport)))
		return PROTO_DNS;
	return 0;
}

/*
 * Lets a connection's bytes through once they look like an enabled
 * protocol (sticky); ignores it after its budget of calls that did not.
 * A datagram socket is judged per datagram: to or from a DNS port
 * (`peer_port`: the datagram's, when the call named one). Returns whether
 * to send these bytes.
 */
static __always_inline int gate_pass(struct conn *c, const __u8 *d, __u32 n, __u16 peer_port, __u8 dir)
{
	__u8 found;

	if (c->gate == GATE_MATCHED)
		return 1;
	if (c->gate == GATE_IGNORED)
		return 0;
	if (c->datagram)
		return dns_port(c->peer.sport) || dns_port(c->peer.dport) || dns_port(peer_port);
	found = stream_protocol(c, d, n, dir);
	if (found) {
		c->gate = GATE_MATCHED;
		c->matched = found;
		return 1;
	}
	if (c->budget <= 1) {
		c->gate = GATE_IGNORED;
		count(PROTO_STAT_IGNORED);
	} else {
		c->budget--;
	}
	return 0;
}

/*
 * Reads the sockaddr at user address `addr` into the record's peer
 * fields (family left 0 when it is not IPv4/IPv6). Returns the port.
 */
static __always_inline __u16 read_peer(struct proto_event *e, __u64 addr)
{
	struct {
		__u16 family;
		__u16 port;
		__u8 v4[4];
	} head;

	if (!addr || bpf_probe_read_user(&head, sizeof(head), (void *)addr))
		return 0;
	if (head.family == SONDE_AF_INET) {
		__builtin_memcpy(e->peer_addr, head.v4, 4);
	} else if (head.family == SONDE_AF_INET6) {
		/* sockaddr_in6: flowinfo, then the address. */
		if (bpf_probe_read_user(e->peer_addr, 16, (void *)(addr + 8)))
			return 0;
	} else {
		return 0;
	}
	e->peer_family = head.family;
	e->peer_port = __builtin_bswap16(head.port);
	return e->peer_port;
}

static __always_inline __u32 capture_limit(void)
{
	__u32 cap = capture_bytes;

	return cap > PROTO_MAX_CAPTURE ? PROTO_MAX_CAPTURE : cap;
}

/* Copies up to the capture size of one user buffer into s->data. */
static __always_inline __u32 copy_buf(struct scratch *s, __u64 buf, __u64 len)
{
	__u32 n = len < capture_limit() ? len : capture_limit();

	if (n > PROTO_MAX_CAPTURE)
		n = PROTO_MAX_CAPTURE;
	if (bpf_probe_read_user(s->data, n, (void *)buf)) {
		count(PROTO_STAT_READ_FAILED);
		return 0;
	}
	return n;
}

/* Copies up to the capture size of `total` bytes spread over an iovec
 * array. */
static __always_inline __u32 copy_iov(struct scratch *s, __u64 iovp, __u64 iovcnt, __u64 total)
{
	__u32 cap = capture_limit();
	__u64 left = total;
	__u32 off = 0;

	for (int i = 0; i < PROTO_MAX_IOV; i++) {
		struct iovec___sonde iov;
		__u32 n;

		if (i >= iovcnt || left == 0 || off >= cap)
			return off;
		if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iovp + i * sizeof(iov)))) {
			count(PROTO_STAT_READ_FAILED);
			return off;
		}
		if (iov.len > left)
			iov.len = left;
		left -= iov.len;
		n = iov.len < cap - off ? iov.len : cap - off;
		if (n > PROTO_MAX_CAPTURE)
			n = PROTO_MAX_CAPTURE;
		off &= PROTO_MAX_CAPTURE - 1;
		if (bpf_probe_read_user(s->data + off, n, (void *)iov.base)) {
			count(PROTO_STAT_READ_FAILED);
			return off;
		}
		off += n;
	}
	if (left > 0 && off < cap)
		count(PROTO_STAT_IOV_TRUNCATED);
	return off;
}

/*
 * Sends `len` bytes moved in `dir` on the connection (the first
 * `captured` of them staged in s->data), advancing its position; `tls`
 * for the library's plaintext; `addr` the user's sockaddr naming a
 * datagram's other end (0 when the call named none).
 */
static __always_inline void emit(struct scratch *s, struct conn *c, __u32 pid, __u32 fd, __u8 dir, __u64 len,
				 __u32 captured, __u8 tls, __u64 addr)
{
	__u64 *pos = tls ? &c->tls_pos[dir & 1] : &c->pos[dir & 1];
	__u64 at = *pos;
	__u16 peer_port = 0;

	*pos = at + len;
	s->head.peer_family = 0;
	if (!tls && c->encrypted)
		return;
	/* TLS before any protocol, or after PostgreSQL's SSLRequest. */
	if (!tls && !c->datagram && (c->gate != GATE_MATCHED || c->matched == PROTO_POSTGRES) &&
	    looks_like_tls(s->data, captured)) {
		conn_encrypt(c, dir, at);
		fill_head(&s->head, PROTO_EVENT_ENCRYPTED, pid, fd, c);
		if (bpf_ringbuf_output(&proto_events, &s->head, sizeof(s->head), ring_flags(sizeof(s->head))))
			count(PROTO_STAT_RINGBUF_FULL);
		return;
	}
	if (c->datagram)
		peer_port = read_peer(&s->head, addr);
	if (captured > 0 && !gate_pass(c, s->data, captured, peer_port, dir))
		return;
	if (captured == 0 && c->gate != GATE_MATCHED)
		return;
	if (conn_announce(c, pid, fd))
		return;
	fill_head(&s->head, PROTO_EVENT_DATA, pid, fd, c);
	s->head.position = at;
	s->head.length = len;
	s->head.captured = captured;
	s->head.direction = dir;
	s->head.tls = tls;
	captured &= 2 * PROTO_MAX_CAPTURE - 1;
	if (bpf_ringbuf_output(&proto_events, s, sizeof(s->head) + captured, ring_flags(sizeof(s->head) + captured)))
		count(PROTO_STAT_RINGBUF_FULL);
}

/*
 * A data record reserved in the ring and filled there (one copy of the
 * bytes, user memory to ring, instead of two through the per-CPU scratch),
 * for a connection in its steady state: announced, let through, its
 * syscall bytes not encrypted and no TLS handshake to look for in them;
 * a datagram socket's datagram is judged by its peer's port after the
 * copy (and the reservation discarded when it is no DNS). Returns 0 when
 * the connection is not in that state (the caller stages the record in
 * the scratch, see emit).
 *
 * The reservation's size must be a constant: the smallest of a few size
 * classes that holds the capture (the decoder reads `captured` bytes and
 * ignores the rest of the record).
 */
static __always_inline int emit_direct(struct conn *c, __u64 id, __u32 fd, __u8 dir, __u64 len, __u64 buf, __u8 tls,
				       __u64 addr)
{
	__u64 *pos = tls ? &c->tls_pos[dir & 1] : &c->pos[dir & 1];
	__u32 n = len < capture_limit() ? len : capture_limit();
	struct proto_event *e;
	__u64 size, avail;

	if (!c->announced || (!tls && (c->encrypted || c->matched == PROTO_POSTGRES)))
		return 0;
	if (c->datagram ? c->gate == GATE_IGNORED : c->gate != GATE_MATCHED)
		return 0;
#define DIRECT_CLASS(N)                                                                      \
	if (n <= (N)) {                                                                      \
		size = sizeof(*e) + (N);                                                     \
		e = bpf_ringbuf_reserve(&proto_events, sizeof(*e) + (N), 0);                 \
		if (e && bpf_probe_read_user(e + 1, n, (void *)buf)) {                       \
			count(PROTO_STAT_READ_FAILED);                                       \
			n = 0;                                                               \
		}                                                                            \
		goto reserved;                                                               \
	}
	DIRECT_CLASS(256)
	DIRECT_CLASS(1024)
	DIRECT_CLASS(4096)
	DIRECT_CLASS(8192)
	DIRECT_CLASS(PROTO_MAX_CAPTURE)
#undef DIRECT_CLASS
	return 0;
reserved:
	/* A datagram may be no DNS (not a loss): the staged path judges it. */
	if (!e && c->datagram)
		return 0;
	avail = *pos;
	*pos = avail + len;
	if (!e) {
		count(PROTO_STAT_RINGBUF_FULL);
		return 1;
	}
	e->position = avail;
	e->timestamp_ns = bpf_ktime_get_ns();
	e->generation = c->generation;
	e->pid = id >> 32;
	e->tid = (__u32)id;
	e->fd = fd;
	e->length = len;
	e->captured = n;
	e->kind = PROTO_EVENT_DATA;
	e->direction = dir;
	e->tls = tls;
	e->role = c->peer.role;
	__builtin_memset(e->peer_addr, 0, sizeof(e->peer_addr));
	e->peer_port = 0;
	e->peer_family = 0;
	e->datagram = c->datagram;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	if (c->datagram) {
		__u16 port = read_peer(e, addr);

		/* As gate_pass and emit judge a datagram. */
		if (n == 0 || !(dns_port(c->peer.sport) || dns_port(c->peer.dport) || dns_port(port))) {
			bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
			return 1;
		}
	}
	/* The ring holds this record now: wake user space when it crossed a
	 * mark (see ring_flags). */
	avail = bpf_ringbuf_query(&proto_events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(e, sonde_ring_wakeup(avail - size, size, wakeup_bytes));
	return 1;
}

#endif
