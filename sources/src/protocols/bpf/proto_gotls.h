/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * protocols: plaintext from Go's crypto/tls, (*Conn).Read and (*Conn).Write
 * (Go 1.17+, register ABI). Never uretprobes: the kernel's return probe
 * rewrites the return address on the goroutine's stack, and Go copies
 * stacks when they grow, so the process would crash (golang/go#22008).
 * Instead a uprobe at the function's entry notes the call, and uprobes at
 * each of its RET instructions (found by user space disassembling it)
 * read the result. Both run on the same goroutine but not always on the
 * same thread (the goroutine may block and be resumed elsewhere): calls
 * are keyed by the goroutine (its g pointer, R14 on amd64, X28 on arm64).
 *
 * The socket comes from the Conn itself (no nested syscall to join: a
 * Read answered from Go's buffer makes none): tls.Conn.conn, a net.Conn
 * interface whose data word points at a net.TCPConn → conn.fd (*netFD) →
 * pfd (poll.FD) → Sysfd, at offsets user space gives per process (from
 * the binary's DWARF, else its table by Go version; built-in defaults
 * for a process it has not looked at yet). A Conn over something that is
 * not a socket yields an fd the connection map does not know: counted as
 * unmapped, never sent.
 */
#ifndef PROTO_GOTLS_H
#define PROTO_GOTLS_H

#if defined(__TARGET_ARCH_x86)
/* ABIInternal, amd64: integer arguments and results in RAX, RBX, RCX,
 * RDI …; the current g in R14. */
#define GO_REG0(x) ((x)->rax)
#define GO_REG1(x) ((x)->rbx)
#define GO_REG2(x) ((x)->rcx)
#define GO_G(x) ((x)->r14)
#elif defined(__TARGET_ARCH_arm64)
/* ABIInternal, arm64: R0 … R15; the current g in R28. */
#define GO_REG0(x) (((const struct user_pt_regs *)(x))->regs[0])
#define GO_REG1(x) (((const struct user_pt_regs *)(x))->regs[1])
#define GO_REG2(x) (((const struct user_pt_regs *)(x))->regs[2])
#define GO_G(x) (((const struct user_pt_regs *)(x))->regs[28])
#else
#error "Go's register ABI is known here for amd64 and arm64 only"
#endif

/* The fd behind a *tls.Conn, or -1. */
static __always_inline __s32 go_conn_fd(__u32 pid, __u64 conn)
{
	const struct proto_go_offsets *known = bpf_map_lookup_elem(&proto_go_offsets, &pid);
	/* A process user space has not looked at yet: the offsets of every
	 * Go release from 1.17 on (user space's table checks this). */
	struct proto_go_offsets off = { .conn = 0, .netfd = 0, .pfd = 0, .sysfd = 16 };
	__u64 data = 0, netfd = 0;
	__s64 sysfd = -1;

	if (known)
		off = *known;
	/* An interface is (itab, data): the TCPConn pointer is the second word. */
	if (bpf_probe_read_user(&data, sizeof(data), (void *)(conn + off.conn + 8)) || !data ||
	    bpf_probe_read_user(&netfd, sizeof(netfd), (void *)(data + off.netfd)) || !netfd ||
	    bpf_probe_read_user(&sysfd, sizeof(sysfd), (void *)(netfd + off.pfd + off.sysfd)))
		return -1;
	return sysfd < 0 || sysfd > 0x7fffffff ? -1 : (__s32)sysfd;
}

/* `n` plaintext bytes at `buf` moved in `dir` on the Conn at `conn`. */
static __always_inline void go_tls_send(__u32 pid, __u64 conn, __u64 buf, __s64 n, __u8 dir)
{
	struct scratch *s;
	struct conn *c;
	__s32 fd;

	if (n <= 0)
		return;
	fd = go_conn_fd(pid, conn);
	c = fd < 0 ? 0 : conn_of(pid, fd, 0, 0);
	if (!c) {
		count(PROTO_STAT_TLS_UNMAPPED);
		return;
	}
	if (c->gate == GATE_IGNORED)
		return;
	conn_encrypt(c, dir, c->pos[dir & 1]);
	if (emit_direct(c, bpf_get_current_pid_tgid(), fd, dir, n, buf, 1, 0))
		return;
	s = scratch_slot();
	if (!s)
		return;
	emit(s, c, pid, fd, dir, n, copy_buf(s, buf, n), 1, 0);
}

/* (c *Conn, b []byte): receiver, then the slice's pointer and length. */
SEC("uprobe")
int go_tls_read_enter(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_call_key key = { .pid = id >> 32, .direction = PROTO_DIR_INGRESS, .g = GO_G(ctx) };
	struct go_call call = { .conn = GO_REG0(ctx), .buf = GO_REG1(ctx) };

	if (key.pid == self_tgid)
		return 0;
	bpf_map_update_elem(&proto_go_calls, &key, &call, BPF_ANY);
	return 0;
}

/* (n int, err error): n in the first result register. */
SEC("uprobe")
int go_tls_read_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_call_key key = { .pid = id >> 32, .direction = PROTO_DIR_INGRESS, .g = GO_G(ctx) };
	struct go_call *call = bpf_map_lookup_elem(&proto_go_calls, &key);

	if (!call)
		return 0;
	go_tls_send(key.pid, call->conn, call->buf, GO_REG0(ctx), PROTO_DIR_INGRESS);
	bpf_map_delete_elem(&proto_go_calls, &key);
	return 0;
}

SEC("uprobe")
int go_tls_write_enter(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (pid == self_tgid)
		return 0;
	go_tls_send(pid, GO_REG0(ctx), GO_REG1(ctx), GO_REG2(ctx), PROTO_DIR_EGRESS);
	return 0;
}

#endif
