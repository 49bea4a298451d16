/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * protocols: finding a socket behind an fd (CO-RE walk of the task's fd
 * table, as DeepFlow and Kyanos do: there is no kprobe here to mark socket
 * calls) and keeping the connection map.
 */
#ifndef PROTO_CONN_H
#define PROTO_CONN_H

struct fdtable___sonde {
	unsigned int max_fds;
	void **fd;
} __attribute__((preserve_access_index));

struct files_struct___sonde {
	struct fdtable___sonde *fdt;
} __attribute__((preserve_access_index));

struct task_struct___sonde {
	struct files_struct___sonde *files;
	struct task_struct___sonde *group_leader;
	char comm[16];
} __attribute__((preserve_access_index));

struct inode___sonde {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct file___sonde {
	struct inode___sonde *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct socket___sonde {
	short type;
	void *sk;
} __attribute__((preserve_access_index));

/* What a TCP socket has moved so far (all since 4.19). */
struct tcp_sock___progress {
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 rcv_nxt;
	__u32 copied_seq;
	__u32 snd_una;
	__u32 snd_nxt;
} __attribute__((preserve_access_index));

/*
 * Whether a TCP socket found at a read or write has moved no byte to or
 * from its process yet: nothing read (received minus what waits unread)
 * and nothing sent (acknowledged plus in flight). Such a socket was made
 * while the agent ran, in another process (a pre-forking server accepts
 * in its parent and serves in a child, as PostgreSQL does): its streams
 * are seen from their first byte. Found at a call's exit (the exit-only
 * object), the call's own bytes have moved already: `moved_in` read,
 * `moved_out` written by it are allowed for.
 */
static __always_inline int tcp_untouched(void *sk, __u64 moved_in, __u64 moved_out)
{
	struct tcp_sock___progress *tp = sk;
	__u64 received = BPF_CORE_READ(tp, bytes_received);
	__u32 unread = BPF_CORE_READ(tp, rcv_nxt) - BPF_CORE_READ(tp, copied_seq);
	__u64 acked = BPF_CORE_READ(tp, bytes_acked);
	__u32 in_flight = BPF_CORE_READ(tp, snd_nxt) - BPF_CORE_READ(tp, snd_una);

	/* The peer's FIN counts in rcv_nxt, not in bytes_received; ours in
	 * snd_nxt: a byte of slack each way. */
	return received <= unread + moved_in && acked <= 1 + moved_out && in_flight <= 1 + moved_out;
}

#define S_IFMT___sonde 0170000
#define S_IFSOCK___sonde 0140000
#define SOCK_STREAM___sonde 1
#define SOCK_DGRAM___sonde 2

/* The struct file at `fd` of the current task, or 0. */
static __always_inline __u64 fd_file(__u32 fd)
{
#ifdef PROTO_TASK_STORAGE
	/* 5.11+: the task as a BTF pointer, walked with plain loads (the
	 * verifier makes them fault-safe); only the fd array, a pointer to
	 * pointers, needs a probe read. */
	struct task_struct___sonde *task = (void *)bpf_get_current_task_btf();
	struct fdtable___sonde *fdt = task->files->fdt;
	void *file = 0;

	if (!fdt || fd >= fdt->max_fds)
		return 0;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]))
		return 0;
	return (__u64)file;
#else
	struct task_struct___sonde *task = (void *)bpf_get_current_task();
	struct fdtable___sonde *fdt = BPF_CORE_READ(task, files, fdt);
	void **fds;
	void *file = 0;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return 0;
	return (__u64)file;
#endif
}

/*
 * sonde_read_tuple in one probe read for IPv4 (two for IPv6) instead of
 * five: the addresses, ports and family lead struct sock_common
 * (skc_addrpair, skc_hash, skc_portpair, skc_family: 20 bytes since 2.6),
 * read as one block, each field at its CO-RE offset within it; the IPv6
 * addresses follow each other. Falls back to the field-by-field read on a
 * layout that does not fit.
 */
static __always_inline int read_tuple(const void *sk, struct sonde_tuple *t)
{
	const struct sock_common___sonde *skc = sk;
	__u32 base = bpf_core_field_offset(skc->skc_daddr);
	__u32 saddr = bpf_core_field_offset(skc->skc_rcv_saddr) - base;
	__u32 dport = bpf_core_field_offset(skc->skc_dport) - base;
	__u32 num = bpf_core_field_offset(skc->skc_num) - base;
	__u32 family = bpf_core_field_offset(skc->skc_family) - base;
	__u32 v6d = bpf_core_field_offset(skc->skc_v6_daddr);
	__u32 v6s = bpf_core_field_offset(skc->skc_v6_rcv_saddr);
	__u8 head[24];
	__u8 v6[32];
	__u16 port;

	if (saddr > 20 || dport > 22 || num > 22 || family > 22 || v6s != v6d + 16)
		return sonde_read_tuple(sk, t);
	if (bpf_probe_read_kernel(head, sizeof(head), (const __u8 *)sk + base))
		return -1;
	__builtin_memcpy(&t->family, head + family, 2);
	__builtin_memcpy(&t->sport, head + num, 2);
	__builtin_memcpy(&port, head + dport, 2);
	t->dport = __builtin_bswap16(port);
	if (t->family == SONDE_AF_INET6) {
		if (bpf_probe_read_kernel(v6, sizeof(v6), (const __u8 *)sk + v6d))
			return -1;
		__builtin_memcpy(t->daddr, v6, 16);
		__builtin_memcpy(t->saddr, v6 + 16, 16);
	} else {
		__builtin_memcpy(t->daddr, head, 4);
		__builtin_memcpy(t->saddr, head + saddr, 4);
	}
	return 0;
}

/* Whether `port` is a configured DNS server port. */
static __always_inline int dns_port(__u16 port)
{
	if (!port)
		return 0;
	for (int i = 0; i < PROTO_MAX_DNS_PORTS; i++)
		if (dns_ports[i] == port)
			return 1;
	return 0;
}

static __always_inline int port_wanted(__u16 port)
{
	return bpf_map_lookup_elem(&proto_ports, &port) != 0;
}

/*
 * Makes the connection of `key` from its file, when that is a TCP socket
 * (or, with DNS enabled, a UDP socket) over IPv4/IPv6: tracked
 * (GATE_INSPECT) or, filtered out, kept as GATE_IGNORED so the walk is
 * not repeated. Other fds go to the not-a-connection cache. Returns the
 * map entry of a socket found at a data call (`discovered` as passed,
 * whatever tcp_untouched then says), else 0.
 */
static __always_inline struct conn *conn_make(const struct conn_key *key, __u64 file, __u8 role, __u8 discovered,
					      __u64 moved_in, __u64 moved_out)
{
	struct file___sonde *f = (void *)file;
	struct socket___sonde *sock;
	struct task_struct___sonde *task;
	/* Found at a data call, which uses the entry at once. */
	__u8 found_at_call = discovered;
	struct conn c = {};
	__u8 yes = 1;
	void *sk;

	if (!file)
		return 0;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT___sonde) != S_IFSOCK___sonde)
		goto not_conn;
	sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		goto not_conn;
	switch (BPF_CORE_READ(sock, type)) {
	case SOCK_STREAM___sonde:
		break;
	case SOCK_DGRAM___sonde:
		if (!(protocols & PROTO_DNS))
			goto not_conn;
		c.datagram = 1;
		break;
	default:
		goto not_conn;
	}
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		goto not_conn;
	{
		struct sonde_tuple t = {};

		if (read_tuple(sk, &t)) {
			count(PROTO_STAT_READ_FAILED);
			return 0;
		}
		if (t.family != SONDE_AF_INET && t.family != SONDE_AF_INET6)
			goto not_conn;
		__builtin_memcpy(c.peer.saddr, t.saddr, 16);
		__builtin_memcpy(c.peer.daddr, t.daddr, 16);
		c.peer.sport = t.sport;
		c.peer.dport = t.dport;
		c.peer.family = t.family;
	}
	if (found_at_call && !c.datagram && tcp_untouched(sk, moved_in, moved_out))
		discovered = 0;
	c.generation = bpf_ktime_get_ns();
	c.file = file;
	c.peer.cgroup_id = bpf_get_current_cgroup_id();
	c.peer.role = role;
	c.peer.discovered = discovered;
	c.budget = discovered ? PROTO_INSPECT_BUDGET : 2;
#ifdef PROTO_TASK_STORAGE
	/* The task as a BTF pointer: plain loads, no probe reads. */
	task = (void *)bpf_get_current_task_btf();
	__builtin_memcpy(c.peer.comm, task->group_leader->comm, sizeof(c.peer.comm));
	c.peer.comm[sizeof(c.peer.comm) - 1] = 0;
#else
	task = (void *)bpf_get_current_task();
	BPF_CORE_READ_STR_INTO(&c.peer.comm, task, group_leader, comm);
#endif
	if (filter_ports && !port_wanted(c.peer.sport) && !port_wanted(c.peer.dport))
		c.gate = GATE_IGNORED;
	if (filter_comm && bpf_map_lookup_elem(&proto_exclude_comm, c.peer.comm))
		c.gate = GATE_IGNORED;
	/* A connected datagram socket whose ends are no DNS port never
	 * carries DNS (an unconnected one is judged per datagram). */
	if (c.datagram && c.peer.dport && !dns_port(c.peer.dport) && !dns_port(c.peer.sport))
		c.gate = GATE_IGNORED;
	if (c.gate == GATE_IGNORED)
		count(PROTO_STAT_IGNORED);
	if (bpf_map_update_elem(&proto_conns, key, &c, BPF_ANY)) {
		count(PROTO_STAT_CONNS_FULL);
		return 0;
	}
	count(PROTO_STAT_CONN_INSERTS);
	/* A lookup first: a delete takes the bucket's lock even when the key
	 * is missing (it is, but for an fd that was a file before). */
	if (bpf_map_lookup_elem(&proto_not_conns, key))
		bpf_map_delete_elem(&proto_not_conns, key);
	/* Only a socket found at a data call is used at once. */
	return found_at_call ? bpf_map_lookup_elem(&proto_conns, key) : 0;
not_conn:
	bpf_map_update_elem(&proto_not_conns, key, &yes, BPF_ANY);
	return 0;
}

/*
 * The connection at `fd` of the current process: the map's entry when it
 * is still the same file, else found anew (a socket first seen now is
 * "discovered": it may predate the agent). 0 for anything else.
 */
static __always_inline struct conn *conn_of(__u32 pid, __u32 fd, __u64 moved_in, __u64 moved_out)
{
	struct conn_key key = { .pid = pid, .fd = fd };
	struct conn *c = bpf_map_lookup_elem(&proto_conns, &key);
	__u64 file;

	if (!c && bpf_map_lookup_elem(&proto_not_conns, &key))
		return 0;
	file = fd_file(fd);
	if (c && c->file == file)
		return c;
	if (c) {
		bpf_map_delete_elem(&proto_conns, &key);
		count(PROTO_STAT_CONN_DELETES);
	}
	return conn_make(&key, file, PROTO_ROLE_UNKNOWN, 1, moved_in, moved_out);
}

/* A record with only its header (OPEN's body follows for OPEN). */
static __always_inline void fill_head(struct proto_event *e, __u8 kind, __u32 pid, __u32 fd, const struct conn *c)
{
	e->timestamp_ns = bpf_ktime_get_ns();
	e->generation = c ? c->generation : 0;
	e->pid = pid;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->fd = fd;
	e->kind = kind;
	e->role = c ? c->peer.role : 0;
	e->datagram = c ? c->datagram : 0;
}

/*
 * The socket turned out to carry TLS: its own bytes are no longer sent,
 * the library's plaintext is. A connection that spoke plaintext first
 * (PostgreSQL's SSLRequest, STARTTLS) goes on at the same positions, so
 * user space sees one stream: the plaintext continues where the socket's
 * bytes stopped (`at`: before this call's bytes in direction `dir`).
 */
static __always_inline void conn_encrypt(struct conn *c, __u8 dir, __u64 at)
{
	if (c->encrypted)
		return;
	c->encrypted = 1;
	/* Never let through: user space saw nothing, plaintext starts at 0. */
	if (c->gate != GATE_MATCHED)
		return;
	c->tls_pos[dir & 1] = at;
	c->tls_pos[(dir + 1) & 1] = c->pos[(dir + 1) & 1];
}

/* The OPEN record, once per connection, before its first data. */
static __always_inline int conn_announce(struct conn *c, __u32 pid, __u32 fd)
{
	struct proto_open open = {};

	if (c->announced)
		return 0;
	fill_head(&open.head, PROTO_EVENT_OPEN, pid, fd, c);
	open.peer = c->peer;
	if (bpf_ringbuf_output(&proto_events, &open, sizeof(open), ring_flags(sizeof(open)))) {
		count(PROTO_STAT_RINGBUF_FULL);
		return -1;
	}
	c->announced = 1;
	return 0;
}

/* close(): the CLOSE record if one is owed; forget the fd either way. */
static __always_inline void conn_close(__u32 pid, __u32 fd)
{
	struct conn_key key = { .pid = pid, .fd = fd };
	struct conn *c = bpf_map_lookup_elem(&proto_conns, &key);
	struct proto_event e = {};

	if (!c) {
		/* A lookup first: a delete takes the bucket's lock even when
		 * the key is missing (most closed files were never looked at). */
		if (bpf_map_lookup_elem(&proto_not_conns, &key))
			bpf_map_delete_elem(&proto_not_conns, &key);
		return;
	}
	if (c->announced) {
		fill_head(&e, PROTO_EVENT_CLOSE, pid, fd, c);
		if (bpf_ringbuf_output(&proto_events, &e, sizeof(e), ring_flags(sizeof(e))))
			count(PROTO_STAT_RINGBUF_FULL);
	}
	bpf_map_delete_elem(&proto_conns, &key);
	count(PROTO_STAT_CONN_DELETES);
}

#endif
