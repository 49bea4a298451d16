/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * protocols: maps and load-time settings. Included once, by
 * protocols.bpf.c.
 */
#ifndef PROTO_MAPS_H
#define PROTO_MAPS_H

/* Load-time settings (user space overrides them before the load). */
volatile const __u32 capture_bytes = 4096;
volatile const __u32 protocols = PROTO_HTTP1;
volatile const __u32 self_tgid = 0;
volatile const __u8 filter_ports = 0;
volatile const __u8 filter_comm = 0;
/* Ports of DNS servers (0: unused slot): a datagram socket's bytes are
 * captured only to or from these. */
volatile const __u16 dns_ports[PROTO_MAX_DNS_PORTS] = { 53, 0, 0, 0 };
/* The ring wakes user space each time this much more waits (a timer
 * drains the rest), so a busy node costs one wakeup per batch, not per
 * call (see ring_flags). Never 0. */
volatile const __u64 wakeup_bytes = 256 * 1024;

/* Gate states of a connection. */
#define GATE_INSPECT 0
#define GATE_MATCHED 1
#define GATE_IGNORED 2

struct conn_key {
	__u32 pid;
	__u32 fd;
};

/* A socket of a traced process, from accept/connect or found by walking
 * the fd table at its first read or write. */
struct conn {
	__u64 generation;
	/* The struct file it was found as: a different one at the same fd
	 * (dup2, exec's close-on-exec, pid reuse) is a new connection. */
	__u64 file;
	/* Bytes moved so far per direction, by the socket calls and by the
	 * TLS library (plaintext). */
	__u64 pos[2];
	__u64 tls_pos[2];
	struct proto_peer peer;
	__u8 gate;
	__u8 budget;
	/* The socket carries TLS records: its syscall bytes are never sent. */
	__u8 encrypted;
	/* The OPEN record was sent (so a CLOSE is owed). */
	__u8 announced;
	/* The PROTO_* bit whose gate let the connection through. */
	__u8 matched;
	/* A datagram (UDP) socket: gated per datagram, by DNS port. */
	__u8 datagram;
	__u8 _pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_key);
	__type(value, struct conn);
} proto_conns SEC(".maps");

/* fds known not to be interesting sockets (files, pipes, unix or UDP
 * sockets): one lookup, then nothing, for all other I/O. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, __u8);
} proto_not_conns SEC(".maps");

/* A data call between its enter and exit, per thread. */
struct call {
	__u64 buf;
	__u64 count;
	/* sendto/recvfrom: the user's sockaddr (datagram peers). */
	__u64 addr;
	__u32 fd;
	/* CALL_*, or CALL_DONE once its exit ran (marking the entry is
	 * cheaper than deleting it; the next enter overwrites it). */
	__u8 kind;
	/* A TLS library call may be under way on this connection: the exit
	 * looks for it (plaintext connections skip that lookup). */
	__u8 maybe_tls;
	__u8 _pad[2];
};

#define CALL_DONE 0
#define CALL_BUF 1
#define CALL_IOV 2
#define CALL_MSG 3
#define CALL_MMSG 4
#define CALL_SIZE_ONLY 5
#define CALL_CONNECT 6
#define CALL_ACCEPT 7

#ifndef PROTO_ARGS_AT_EXIT
#ifdef PROTO_TASK_STORAGE
/* 5.11+ (protocols_task.bpf.c): in the thread's own task storage, a
 * pointer walk from the task instead of a hash update per call. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct call);
} proto_calls SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct call);
} proto_calls SEC(".maps");
#endif

/* The calling thread's stash: made when `create` and missing, else 0
 * when missing. Written in place (a thread's entry is its own): one
 * lookup per call, no hash update once the thread has one. */
static __always_inline struct call *call_slot(__u64 id, int create)
{
#ifdef PROTO_TASK_STORAGE
	return bpf_task_storage_get(&proto_calls, bpf_get_current_task_btf(), 0,
				    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
#else
	struct call *call = bpf_map_lookup_elem(&proto_calls, &id);
	struct call none = {};

	if (call || !create)
		return call;
	bpf_map_update_elem(&proto_calls, &id, &none, BPF_ANY);
	return bpf_map_lookup_elem(&proto_calls, &id);
#endif
}
#endif /* !PROTO_ARGS_AT_EXIT: the exit-only object keeps nothing per call */

/* A TLS library call between its entry and return, per thread. */
struct tls_call {
	__u64 ssl;
	__u64 buf;
	/* SSL_*_ex: where the library writes the byte count. */
	__u64 count_ptr;
	/* The socket the library used during the call (-1 until seen). */
	__s32 fd;
	__u8 direction;
	__u8 _pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct tls_call);
} proto_tls_calls SEC(".maps");

/* SSL* → the fd it last used: for SSL_read answered from the library's
 * buffer without a syscall. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __s32);
} proto_tls_fds SEC(".maps");

/* A Go crypto/tls Read between its call and a return, per goroutine
 * (see proto_gotls.h). */
struct go_call_key {
	__u32 pid;
	__u32 direction;
	/* The goroutine's g pointer. */
	__u64 g;
};

struct go_call {
	__u64 conn;
	__u64 buf;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_call_key);
	__type(value, struct go_call);
} proto_go_calls SEC(".maps");

/* Go processes → where their tls.Conn keeps the socket's fd. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct proto_go_offsets);
} proto_go_offsets SEC(".maps");

/* Thread → the encrypted socket it last read ciphertext from outside a
 * TLS call: for libraries fed through memory BIOs (Node's TLSWrap reads
 * the socket, then calls SSL_read with no syscall inside). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __s32);
} proto_tls_last_read SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} proto_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[16]);
	__type(value, __u8);
} proto_exclude_comm SEC(".maps");

/* Staging for one record; one slot per CPU (an array, not a per-CPU map:
 * per-CPU values are capped at 32 KiB). Twice the largest capture, so
 * the verifier can bound an iovec's copy at any offset below it. */
struct scratch {
	struct proto_event head;
	__u8 data[PROTO_MAX_CAPTURE * 2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set to the number of CPUs at load */
	__type(key, __u32);
	__type(value, struct scratch);
} proto_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024);
} proto_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROTO_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} proto_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&proto_stats, &stat);

	if (value)
		*value += 1;
}

/* Whether the record of `size` bytes about to be sent wakes user space:
 * once per wakeup_bytes filled (sonde_ring.h). */
static __always_inline __u64 ring_flags(__u64 size)
{
	return sonde_ring_wakeup(bpf_ringbuf_query(&proto_events, BPF_RB_AVAIL_DATA), size, wakeup_bytes);
}

#endif
