/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * protocols: plaintext from OpenSSL/BoringSSL. uprobes on SSL_read,
 * SSL_write and their _ex variants (Python ≥ 3.10 uses only those) note
 * the call per thread; the socket syscall the library makes inside the
 * call names the fd (tls_saw_fd, the "nested syscall" join Pixie and
 * Coroot use), else the fd that SSL* used last (SSL_read answered from
 * the library's buffer makes no syscall), else, for a library fed through
 * memory BIOs (Node), the socket the thread last read ciphertext from. The return probe sends the
 * plaintext as the connection's TLS stream. uretprobes are safe here: C
 * stacks do not move.
 */
#ifndef PROTO_TLS_H
#define PROTO_TLS_H

static __always_inline int tls_enter(struct pt_regs *ctx, __u8 dir, int ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call call = {
		.ssl = PT_REGS_PARM1(ctx),
		.buf = PT_REGS_PARM2(ctx),
		.count_ptr = ex ? PT_REGS_PARM4(ctx) : 0,
		.fd = -1,
		.direction = dir,
	};

	if ((id >> 32) == self_tgid)
		return 0;
	bpf_map_update_elem(&proto_tls_calls, &id, &call, BPF_ANY);
	return 0;
}

static __always_inline int tls_exit(struct pt_regs *ctx, int ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32;
	struct tls_call *call = bpf_map_lookup_elem(&proto_tls_calls, &id);
	/* The functions return int: the upper half of the register is not theirs. */
	int ret = (int)PT_REGS_RC(ctx);
	__u64 len = 0;
	struct scratch *s;
	struct conn *c;
	__s32 fd;

	if (!call)
		return 0;
	if (ex) {
		/* SSL_*_ex return 1 on success and store the count. */
		if (ret == 1 && call->count_ptr &&
		    bpf_probe_read_user(&len, sizeof(len), (void *)call->count_ptr))
			count(PROTO_STAT_READ_FAILED);
	} else if (ret > 0) {
		len = ret;
	}
	if (len == 0)
		goto done;
	fd = call->fd;
	if (fd < 0) {
		__s32 *last = bpf_map_lookup_elem(&proto_tls_fds, &call->ssl);

		fd = last ? *last : -1;
	}
	if (fd < 0) {
		/* A memory BIO (Node): the socket this thread read ciphertext
		 * from last, which is what its event loop feeds the SSL* before
		 * the call; kept for the SSL* from then on. */
		__s32 *read = bpf_map_lookup_elem(&proto_tls_last_read, &id);

		fd = read ? *read : -1;
		if (fd >= 0)
			bpf_map_update_elem(&proto_tls_fds, &call->ssl, &fd, BPF_ANY);
	}
	if (fd < 0) {
		count(PROTO_STAT_TLS_UNMAPPED);
		goto done;
	}
	c = conn_of(pid, fd, 0, 0);
	if (!c || c->gate == GATE_IGNORED)
		goto done;
	conn_encrypt(c, call->direction, c->pos[call->direction & 1]);
	if (emit_direct(c, id, fd, call->direction, len, call->buf, 1, 0))
		goto done;
	s = scratch_slot();
	if (!s)
		goto done;
	emit(s, c, pid, fd, call->direction, len, copy_buf(s, call->buf, len), 1, 0);
done:
	bpf_map_delete_elem(&proto_tls_calls, &id);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter)
{
	return tls_enter(ctx, PROTO_DIR_INGRESS, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_exit)
{
	return tls_exit(ctx, 0);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter)
{
	return tls_enter(ctx, PROTO_DIR_EGRESS, 0);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_exit)
{
	return tls_exit(ctx, 0);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter)
{
	return tls_enter(ctx, PROTO_DIR_INGRESS, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_ex_exit)
{
	return tls_exit(ctx, 1);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter)
{
	return tls_enter(ctx, PROTO_DIR_EGRESS, 1);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_ex_exit)
{
	return tls_exit(ctx, 1);
}

#endif
