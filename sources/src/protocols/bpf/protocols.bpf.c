// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * protocols: the bytes of requests and responses, seen from the syscalls
 * that move socket data and from TLS libraries, sent to user space (which
 * reassembles and parses them) through a ring buffer. Tracepoints and
 * uprobes only, no kprobes:
 *
 *   syscalls:sys_enter/exit_{read,write,readv,writev,recvfrom,sendto,
 *     recvmsg,sendmsg,recvmmsg,sendmmsg}   data; sendfile64 size only
 *   syscalls:sys_exit_{accept,accept4,connect}, sys_enter_close
 *                                         connection lifecycle
 *   sched:sched_process_exit             a process is gone
 *   uprobe/uretprobe SSL_{read,write}[_ex] plaintext (OpenSSL, BoringSSL)
 *   uprobe crypto/tls.(*Conn).{Read,Write}, at entry and at each RET
 *                                         plaintext (Go; no uretprobes)
 *
 * Cheap filters first: the agent's own calls, then one hash lookup for
 * fds known not to be TCP sockets (file I/O costs that), then the
 * connection map. A socket is recognised by walking the fd table once.
 * A connection's bytes are copied only once they look like an enabled
 * protocol (a gate, sticky per connection); all parsing is in user space.
 *
 * Minimum kernel 5.8 (ring buffer; BTF for CO-RE).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "sonde_sock.h"
#include "sonde_ring.h"
#include "protocols.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#include "proto_maps.h"
#include "proto_conn.h"
#include "proto_capture.h"

/* struct syscall_trace_enter/exit: an 8-byte trace_entry and the syscall
 * number, then the arguments or the return value (stable since 2.6.32). */
struct sys_enter_ctx {
	__u64 common;
	__s64 nr;
	__u64 args[6];
};

struct sys_exit_ctx {
	__u64 common;
	__s64 nr;
	__s64 ret;
};

#define MSG_PEEK___sonde 2
#define EINPROGRESS___sonde 115

/* Whether a data call on `fd` is wanted: a tracked connection not
 * ignored, and for a TLS connection only inside a library call (its
 * ciphertext is wanted only to learn which socket the call uses, see
 * tls_saw_fd). Sets `*maybe_tls` when the exit must look for such a call. */
static __always_inline struct conn *call_wanted(__u64 id, __u32 fd, __u8 *maybe_tls, __u64 moved_in, __u64 moved_out)
{
	__u32 pid = id >> 32;
	struct conn *c;

	if (pid == self_tgid)
		return 0;
	c = conn_of(pid, fd, moved_in, moved_out);
	if (!c || c->gate == GATE_IGNORED)
		return 0;
	if (c->encrypted && !bpf_map_lookup_elem(&proto_tls_calls, &id)) {
		__s32 sfd = fd;

		if (moved_in)
			bpf_map_update_elem(&proto_tls_last_read, &id, &sfd, BPF_ANY);
		return 0;
	}
	*maybe_tls = c->encrypted || c->gate != GATE_MATCHED;
	return c;
}

/* Inside SSL_read/SSL_write: the socket it uses is this fd. */
static __always_inline int tls_saw_fd(__u64 id, __u32 pid, __u32 fd)
{
	struct tls_call *tls = bpf_map_lookup_elem(&proto_tls_calls, &id);
	struct conn_key key = { .pid = pid, .fd = fd };
	struct conn *c;
	__s32 sfd = fd;

	if (!tls)
		return 0;
	tls->fd = sfd;
	bpf_map_update_elem(&proto_tls_fds, &tls->ssl, &sfd, BPF_ANY);
	c = bpf_map_lookup_elem(&proto_conns, &key);
	if (c)
		conn_encrypt(c, PROTO_DIR_EGRESS, c->pos[PROTO_DIR_EGRESS]);
	return 1;
}

/* A data call that returned `ret`: its bytes (from `buf`, as `kind` says)
 * to user space. `c` is its connection when the caller has it (else it is
 * looked up). */
static __always_inline int call_done(__u64 id, struct conn *c, __s64 ret, __u8 dir, __u32 fd, __u64 buf, __u64 len,
				     __u8 kind, __u64 addr, __u8 maybe_tls)
{
	__u32 pid = id >> 32;
	struct conn_key key = { .pid = pid, .fd = fd };
	struct scratch *s;
	__u32 captured = 0;

	if ((maybe_tls && tls_saw_fd(id, pid, fd)) || ret <= 0)
		return 0;
	if (!c)
		c = bpf_map_lookup_elem(&proto_conns, &key);
	if (!c)
		return 0;
	if (kind == CALL_MSG) {
		/* The message's iovec array and address, then as readv/writev
		 * (a message that cannot be read is sent as bytes not captured). */
		struct msghdr_iov___sonde msg;

		if (bpf_probe_read_user(&msg, sizeof(msg), (void *)buf)) {
			count(PROTO_STAT_READ_FAILED);
			__builtin_memset(&msg, 0, sizeof(msg));
		}
		kind = CALL_IOV;
		buf = msg.iov;
		len = msg.iovlen;
		addr = msg.namelen ? msg.name : 0;
	}
	if (kind == CALL_IOV && len == 1) {
		/* One buffer (most sendmsg/recvmsg): as read/write. */
		struct iovec___sonde iov;

		if (!bpf_probe_read_user(&iov, sizeof(iov), (void *)buf)) {
			kind = CALL_BUF;
			buf = iov.base;
		}
	}
	if (kind == CALL_BUF && emit_direct(c, id, fd, dir, ret, buf, 0, addr))
		return 0;
	s = scratch_slot();
	if (!s)
		return 0;
	if (kind == CALL_BUF) {
		captured = copy_buf(s, buf, ret);
	} else if (kind == CALL_IOV) {
		captured = copy_iov(s, buf, len, ret);
	} else if (kind == CALL_MMSG) {
		/* ret is a message count: each message is its own record. */
		for (int i = 0; i < PROTO_MAX_MMSG; i++) {
			struct msghdr_iov___sonde msg;
			__u32 len = 0;
			__u64 at = buf + i * MMSGHDR_SIZE;

			if (i >= ret)
				break;
			if (bpf_probe_read_user(&msg, sizeof(msg), (void *)at) ||
			    bpf_probe_read_user(&len, sizeof(len), (void *)(at + MMSGHDR_LEN_OFFSET))) {
				count(PROTO_STAT_READ_FAILED);
				break;
			}
			captured = copy_iov(s, msg.iov, msg.iovlen, len);
			emit(s, c, pid, fd, dir, len, captured, 0, msg.namelen ? msg.name : 0);
		}
		if (ret > PROTO_MAX_MMSG)
			count(PROTO_STAT_IOV_TRUNCATED);
		return 0;
	}
	emit(s, c, pid, fd, dir, ret, captured, 0, addr);
	return 0;
}

#ifdef PROTO_ARGS_AT_EXIT
/*
 * A data call that moved nothing (EAGAIN on a non-blocking socket, most
 * often): nothing to send, and no fd table walk or discovery (the next
 * call that moves bytes does that). Only a TLS library's call on a
 * connection already known learns its socket from it (see tls_saw_fd).
 */
static __always_inline int call_failed(__u64 id, __u32 fd)
{
	struct conn_key key = { .pid = id >> 32, .fd = fd };
	struct conn *c;

	if (key.pid == self_tgid)
		return 0;
	c = bpf_map_lookup_elem(&proto_conns, &key);
	if (c && c->gate != GATE_IGNORED && (c->encrypted || c->gate != GATE_MATCHED))
		tls_saw_fd(id, key.pid, fd);
	return 0;
}

/*
 * Kernel 5.15+ (protocols_args.bpf.c): exit programs only, each reading
 * its call's arguments from the task's entry registers (sonde_args.h): one
 * program run per call instead of two, and nothing kept per call.
 */
#include "sonde_args.h"

static __always_inline int data_exit(struct sys_exit_ctx *ctx, __u8 dir, __u32 fd, __u64 buf, __u64 len, __u8 kind,
				     __u64 addr)
{
	/* At the exit the call's bytes have moved: a connection found now is
	 * untouched if it was before them (see tcp_untouched). */
	__u64 moved = ctx->ret > 0 && kind != CALL_MMSG ? ctx->ret : 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u8 maybe_tls = 0;
	struct conn *c;

	if (ctx->ret <= 0)
		return call_failed(id, fd);
	c = call_wanted(id, fd, &maybe_tls, dir == PROTO_DIR_INGRESS ? moved : 0, dir == PROTO_DIR_EGRESS ? moved : 0);
	if (!c)
		return 0;
	return call_done(id, c, ctx->ret, dir, fd, buf, len, kind, addr, maybe_tls);
}

#define DATA_EXIT(name, dir, kind, count_arg)                                                              \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                                         \
	int exit_##name(struct sys_exit_ctx *ctx)                                                          \
	{                                                                                                  \
		struct pt_regs___sonde_args *r = sonde_entry_regs();                                       \
		return data_exit(ctx, dir, SONDE_ARG0(r), SONDE_ARG1(r), count_arg(r), kind, 0);           \
	}

DATA_EXIT(read, PROTO_DIR_INGRESS, CALL_BUF, SONDE_ARG2)
DATA_EXIT(write, PROTO_DIR_EGRESS, CALL_BUF, SONDE_ARG2)
DATA_EXIT(readv, PROTO_DIR_INGRESS, CALL_IOV, SONDE_ARG2)
DATA_EXIT(writev, PROTO_DIR_EGRESS, CALL_IOV, SONDE_ARG2)
DATA_EXIT(sendmsg, PROTO_DIR_EGRESS, CALL_MSG, SONDE_ARG2)
DATA_EXIT(sendmmsg, PROTO_DIR_EGRESS, CALL_MMSG, SONDE_ARG2)
DATA_EXIT(recvmmsg, PROTO_DIR_INGRESS, CALL_MMSG, SONDE_ARG2)
/* out_fd, in_fd, offset, count: the bytes come from a file, so only the
 * position moves (a gap user space skips). */
DATA_EXIT(sendfile64, PROTO_DIR_EGRESS, CALL_SIZE_ONLY, SONDE_ARG3)

/* fd, buf, len, flags, addr, addrlen: the address names a datagram's
 * destination. */
SEC("tracepoint/syscalls/sys_exit_sendto")
int exit_sendto(struct sys_exit_ctx *ctx)
{
	struct pt_regs___sonde_args *r = sonde_entry_regs();

	return data_exit(ctx, PROTO_DIR_EGRESS, SONDE_ARG0(r), SONDE_ARG1(r), SONDE_ARG2(r), CALL_BUF, SONDE_ARG4(r));
}

/* MSG_PEEK leaves the bytes queued: the next read returns them again.
 * The address (filled by the call) names a datagram's source. */
SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct sys_exit_ctx *ctx)
{
	struct pt_regs___sonde_args *r = sonde_entry_regs();

	if (SONDE_ARG3(r) & MSG_PEEK___sonde)
		return 0;
	return data_exit(ctx, PROTO_DIR_INGRESS, SONDE_ARG0(r), SONDE_ARG1(r), SONDE_ARG2(r), CALL_BUF, SONDE_ARG4(r));
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct sys_exit_ctx *ctx)
{
	struct pt_regs___sonde_args *r = sonde_entry_regs();

	if (SONDE_ARG2(r) & MSG_PEEK___sonde)
		return 0;
	return data_exit(ctx, PROTO_DIR_INGRESS, SONDE_ARG0(r), SONDE_ARG1(r), 0, CALL_MSG, 0);
}

/* A new connection, known at the call's return. */
SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct sys_exit_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key = { .pid = id >> 32 };

	if ((id >> 32) == self_tgid || (ctx->ret != 0 && ctx->ret != -EINPROGRESS___sonde))
		return 0;
	key.fd = SONDE_ARG0(sonde_entry_regs());
	conn_make(&key, fd_file(key.fd), PROTO_ROLE_CLIENT, 0, 0, 0);
	return 0;
}

static __always_inline int accepted(__s64 ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct conn_key key = { .pid = id >> 32, .fd = ret };

	if ((id >> 32) == self_tgid || ret < 0)
		return 0;
	conn_make(&key, fd_file(key.fd), PROTO_ROLE_SERVER, 0, 0, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct sys_exit_ctx *ctx)
{
	return accepted(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct sys_exit_ctx *ctx)
{
	return accepted(ctx->ret);
}

#else
/* A data call on a tracked connection: remember it until its exit. */
static __always_inline int call_enter(__u32 fd, __u64 buf, __u64 len, __u8 kind, __u64 addr)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u8 maybe_tls = 0;
	struct call *call;

	if (!call_wanted(id, fd, &maybe_tls, 0, 0))
		return 0;
	call = call_slot(id, 1);
	if (!call)
		return 0;
	call->buf = buf;
	call->count = len;
	call->addr = addr;
	call->fd = fd;
	call->kind = kind;
	call->maybe_tls = maybe_tls;
	return 0;
}

static __always_inline int call_exit(struct sys_exit_ctx *ctx, __u8 dir)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *call = call_slot(id, 0);

	if (!call || call->kind == CALL_DONE)
		return 0;
	call_done(id, 0, ctx->ret, dir, call->fd, call->buf, call->count, call->kind, call->addr, call->maybe_tls);
	call->kind = CALL_DONE;
	return 0;
}

#define ENTER(name, fd_arg, buf_arg, count_arg, kind)                         \
	SEC("tracepoint/syscalls/sys_enter_" #name)                           \
	int enter_##name(struct sys_enter_ctx *ctx)                           \
	{                                                                     \
		return call_enter(ctx->args[fd_arg], ctx->args[buf_arg], ctx->args[count_arg], kind, 0); \
	}
#define EXIT(name, dir)                                                       \
	SEC("tracepoint/syscalls/sys_exit_" #name)                            \
	int exit_##name(struct sys_exit_ctx *ctx)                             \
	{                                                                     \
		return call_exit(ctx, dir);                                   \
	}

ENTER(read, 0, 1, 2, CALL_BUF)
EXIT(read, PROTO_DIR_INGRESS)
ENTER(write, 0, 1, 2, CALL_BUF)
EXIT(write, PROTO_DIR_EGRESS)
ENTER(readv, 0, 1, 2, CALL_IOV)
EXIT(readv, PROTO_DIR_INGRESS)
ENTER(writev, 0, 1, 2, CALL_IOV)
EXIT(writev, PROTO_DIR_EGRESS)
EXIT(sendto, PROTO_DIR_EGRESS)
ENTER(sendmsg, 0, 1, 2, CALL_MSG)
EXIT(sendmsg, PROTO_DIR_EGRESS)
ENTER(sendmmsg, 0, 1, 2, CALL_MMSG)
EXIT(sendmmsg, PROTO_DIR_EGRESS)
ENTER(recvmmsg, 0, 1, 2, CALL_MMSG)
EXIT(recvmmsg, PROTO_DIR_INGRESS)
/* out_fd, in_fd, offset, count: the bytes come from a file, so only the
 * position moves (a gap user space skips). */
ENTER(sendfile64, 0, 1, 3, CALL_SIZE_ONLY)
EXIT(sendfile64, PROTO_DIR_EGRESS)
EXIT(recvfrom, PROTO_DIR_INGRESS)
EXIT(recvmsg, PROTO_DIR_INGRESS)

/* fd, buf, len, flags, addr, addrlen: the address names a datagram's
 * destination. */
SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct sys_enter_ctx *ctx)
{
	return call_enter(ctx->args[0], ctx->args[1], ctx->args[2], CALL_BUF, ctx->args[4]);
}

/* MSG_PEEK leaves the bytes queued: the next read returns them again.
 * The address (filled by the call) names a datagram's source. */
SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct sys_enter_ctx *ctx)
{
	if (ctx->args[3] & MSG_PEEK___sonde)
		return 0;
	return call_enter(ctx->args[0], ctx->args[1], ctx->args[2], CALL_BUF, ctx->args[4]);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct sys_enter_ctx *ctx)
{
	if (ctx->args[2] & MSG_PEEK___sonde)
		return 0;
	return call_enter(ctx->args[0], ctx->args[1], 0, CALL_MSG, 0);
}

/* A new connection: remember the socket's fd until the call returns. */
static __always_inline int lifecycle_enter(__u32 fd, __u8 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *call;

	if ((id >> 32) == self_tgid)
		return 0;
	call = call_slot(id, 1);
	if (!call)
		return 0;
	call->fd = fd;
	call->kind = kind;
	return 0;
}

static __always_inline int lifecycle_exit(__s64 ret, __u8 kind)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct call *call = call_slot(id, 0);
	struct conn_key key = { .pid = id >> 32 };

	if (!call || call->kind == CALL_DONE)
		return 0;
	if (call->kind == kind) {
		if (kind == CALL_CONNECT && (ret == 0 || ret == -EINPROGRESS___sonde)) {
			key.fd = call->fd;
			conn_make(&key, fd_file(key.fd), PROTO_ROLE_CLIENT, 0, 0, 0);
		} else if (kind == CALL_ACCEPT && ret >= 0) {
			key.fd = ret;
			conn_make(&key, fd_file(key.fd), PROTO_ROLE_SERVER, 0, 0, 0);
		}
	}
	call->kind = CALL_DONE;
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct sys_enter_ctx *ctx)
{
	return lifecycle_enter(ctx->args[0], CALL_CONNECT);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct sys_exit_ctx *ctx)
{
	return lifecycle_exit(ctx->ret, CALL_CONNECT);
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct sys_enter_ctx *ctx)
{
	return lifecycle_enter(ctx->args[0], CALL_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct sys_exit_ctx *ctx)
{
	return lifecycle_exit(ctx->ret, CALL_ACCEPT);
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct sys_enter_ctx *ctx)
{
	return lifecycle_enter(ctx->args[0], CALL_ACCEPT);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct sys_exit_ctx *ctx)
{
	return lifecycle_exit(ctx->ret, CALL_ACCEPT);
}

#endif /* PROTO_ARGS_AT_EXIT */

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct sys_enter_ctx *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	if ((id >> 32) == self_tgid)
		return 0;
	conn_close(id >> 32, ctx->args[0]);
	return 0;
}

/* The whole process is gone (its last thread): user space forgets its
 * connections and removes their map entries. */
SEC("tracepoint/sched/sched_process_exit")
int process_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct proto_event e = {};

	if ((__u32)id != (id >> 32))
		return 0;
	fill_head(&e, PROTO_EVENT_EXIT, id >> 32, 0, 0);
	if (bpf_ringbuf_output(&proto_events, &e, sizeof(e), ring_flags(sizeof(e))))
		count(PROTO_STAT_RINGBUF_FULL);
	return 0;
}

#include "proto_tls.h"
#include "proto_gotls.h"
