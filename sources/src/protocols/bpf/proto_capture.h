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

/*
 * Lets a connection's bytes through once they look like an enabled
 * protocol (sticky); ignores it after its budget of calls that did not.
 * Returns whether to send these bytes.
 */
static __always_inline int gate_pass(struct conn *c, const __u8 *d, __u32 n)
{
	if (c->gate == GATE_MATCHED)
		return 1;
	if (c->gate == GATE_IGNORED)
		return 0;
	if ((protocols & PROTO_HTTP1) && looks_like_http1(d, n)) {
		c->gate = GATE_MATCHED;
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
 * for the library's plaintext.
 */
static __always_inline void emit(struct scratch *s, struct conn *c, __u32 pid, __u32 fd, __u8 dir, __u64 len,
				 __u32 captured, __u8 tls)
{
	__u64 *pos = tls ? &c->tls_pos[dir & 1] : &c->pos[dir & 1];
	__u64 at = *pos;

	*pos = at + len;
	if (!tls && c->encrypted)
		return;
	if (!tls && c->gate != GATE_MATCHED && looks_like_tls(s->data, captured)) {
		c->encrypted = 1;
		fill_head(&s->head, PROTO_EVENT_ENCRYPTED, pid, fd, c);
		if (bpf_ringbuf_output(&proto_events, &s->head, sizeof(s->head), ring_flags()))
			count(PROTO_STAT_RINGBUF_FULL);
		return;
	}
	if (captured > 0 && !gate_pass(c, s->data, captured))
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
	if (bpf_ringbuf_output(&proto_events, s, sizeof(s->head) + captured, ring_flags()))
		count(PROTO_STAT_RINGBUF_FULL);
}

#endif
