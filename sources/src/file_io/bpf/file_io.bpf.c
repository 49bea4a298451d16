// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * file_io: latency and bytes of file reads, writes and syncs, per process
 * and regular file, aggregated in the kernel.
 *
 *   syscalls:sys_enter_{read,pread64,readv,preadv,preadv2}    fd -> file; a
 *   syscalls:sys_enter_{write,pwrite64,writev,pwritev,pwritev2} regular file
 *   syscalls:sys_enter_{fsync,fdatasync}                      starts a timer
 *   syscalls:sys_exit_* (the same calls)                      adds the call
 *                                                             to its file
 *
 * Sockets, pipes, terminals and devices leave at the entry after the fd
 * walk (no map write). A file is its inode number and file system device,
 * not its path (paths are resolved once, in user space, when a process
 * first touches a file). Minimum kernel 5.5 (BTF).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "file_io.h"
#include "sonde_slot.h"
#include "sonde_fd.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set from user space before load: the agent's own pid (its file sink's
 * writes are not the node's workload), 0 to count it too. */
const volatile __u32 self_pid = 0;
/* Set from user space before load: count only the processes in `fio_pids`. */
const volatile __u8 only_listed = 0;

/* The processes counted when `only_listed` (tgids; user space fills it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FIO_MAX_PIDS);
	__type(key, __u32);
	__type(value, __u8);
} fio_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FIO_MAX_FILES);
	__type(key, struct fio_key);
	__type(value, struct fio_value);
} fio_files SEC(".maps");

struct fio_start {
	__u64 ns;
	struct fio_key key;
	__u32 fd;
	__u32 op;
};

/* Calls in flight, by thread id (a thread is in one call at a time). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FIO_MAX_INFLIGHT);
	__type(key, __u32);
	__type(value, struct fio_start);
} fio_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FIO_RING_BYTES);
} fio_new SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FIO_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} fio_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&fio_stats, &stat);

	if (value)
		*value += 1;
}

struct super_block___fio {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode___fio {
	unsigned short i_mode;
	unsigned long i_ino;
	struct super_block___fio *i_sb;
} __attribute__((preserve_access_index));

struct qstr___fio {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry___fio {
	struct qstr___fio d_name;
	struct dentry___fio *d_parent;
} __attribute__((preserve_access_index));

struct path___fio {
	struct dentry___fio *dentry;
} __attribute__((preserve_access_index));

struct file___fio {
	struct inode___fio *f_inode;
	struct path___fio f_path;
} __attribute__((preserve_access_index));

#define S_IFMT___fio 0170000
#define S_IFREG___fio 0100000

static __always_inline int call_enter(__u64 fd, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 pid = id >> 32, tid = (__u32)id;
	struct fio_start start = {};
	struct file___fio *file;
	struct inode___fio *inode;

	if (pid == self_pid)
		return 0;
	if (only_listed && !bpf_map_lookup_elem(&fio_pids, &pid))
		return 0;
	file = sonde_fd_file((__u32)fd);
	if (!file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	if (!inode || (BPF_CORE_READ(inode, i_mode) & S_IFMT___fio) != S_IFREG___fio)
		return 0;
	start.key.ino = BPF_CORE_READ(inode, i_ino);
	start.key.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	start.key.pid = pid;
	start.key.cgroup_id = bpf_get_current_cgroup_id();
	start.fd = (__u32)fd;
	start.op = op;
	start.ns = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&fio_inflight, &tid, &start, BPF_ANY))
		count(FIO_STAT_INFLIGHT_FULL);
	return 0;
}

static const struct fio_value zero_value;

/* The names of `file`'s dentries into `notice`, the file's own first, up
 * to its file system's root (the root is its own parent). Not inlined: a
 * function taking `struct fio_new_file *` puts the struct in the object's
 * BTF, where the Rust mirror is checked against it. */
static __noinline void walk_names(struct fio_new_file *notice, struct file___fio *file)
{
	struct dentry___fio *dentry, *parent;
	const unsigned char *name;
	__u32 i;

	notice->depth = FIO_PATH_DEPTH + 1;
	dentry = file ? BPF_CORE_READ(file, f_path.dentry) : 0;
	for (i = 0; i < FIO_PATH_DEPTH; i++) {
		parent = BPF_CORE_READ(dentry, d_parent);
		if (!dentry || !parent || parent == dentry) {
			notice->depth = i;
			break;
		}
		name = BPF_CORE_READ(dentry, d_name.name);
		if (!name || bpf_probe_read_kernel_str(notice->names[i], FIO_NAME_LEN, name) < 0)
			notice->names[i][0] = 0;
		dentry = parent;
	}
}

/* A (process, file) pair's first call: its entry, and a notice to user
 * space with the fd and the file's dentry names. */
static __always_inline struct fio_value *new_file(struct fio_start *start)
{
	struct fio_new_file *notice;
	long err;

	err = bpf_map_update_elem(&fio_files, &start->key, &zero_value, BPF_NOEXIST);
	if (err == -17) /* EEXIST: another thread made it first. */
		return bpf_map_lookup_elem(&fio_files, &start->key);
	if (err) {
		count(FIO_STAT_FILES_FULL);
		return 0;
	}
	notice = bpf_ringbuf_reserve(&fio_new, sizeof(*notice), 0);
	if (notice) {
		notice->key = start->key;
		notice->fd = start->fd;
		walk_names(notice, sonde_fd_file(start->fd));
		bpf_ringbuf_submit(notice, 0);
	} else {
		count(FIO_STAT_RING_FULL);
	}
	return bpf_map_lookup_elem(&fio_files, &start->key);
}

static __always_inline int call_exit(struct sonde_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct fio_op_stats *stats;
	struct fio_start *start;
	struct fio_value *value;
	__s64 ret = ctx->ret;
	__u64 ns;
	__u32 op, slot;

	start = bpf_map_lookup_elem(&fio_inflight, &tid);
	if (!start)
		return 0;
	ns = bpf_ktime_get_ns() - start->ns;
	op = start->op;
	value = bpf_map_lookup_elem(&fio_files, &start->key);
	if (!value) {
		value = new_file(start);
		if (!value)
			goto done;
		bpf_get_current_comm(value->comm, sizeof(value->comm));
	}
	if (op >= FIO_OPS)
		goto done;
	stats = &value->op[op];
	__sync_fetch_and_add(&stats->calls, 1);
	if (ret < 0)
		__sync_fetch_and_add(&stats->errors, 1);
	else
		__sync_fetch_and_add(&stats->bytes, ret);
	__sync_fetch_and_add(&stats->ns, ns);
	slot = sonde_slot(ns, FIO_LAT_MIN_SHIFT, FIO_LAT_SLOTS);
	if (slot < FIO_LAT_SLOTS)
		__sync_fetch_and_add(&stats->slots[slot], 1);
done:
	bpf_map_delete_elem(&fio_inflight, &tid);
	return 0;
}

#define ENTER(name, op)                                                    \
	SEC("tracepoint/syscalls/sys_enter_" #name)                        \
	int enter_##name(struct sonde_sys_enter *ctx)                        \
	{                                                                  \
		return call_enter(ctx->args[0], op);                       \
	}

ENTER(read, FIO_OP_READ)
ENTER(pread64, FIO_OP_READ)
ENTER(readv, FIO_OP_READ)
ENTER(preadv, FIO_OP_READ)
ENTER(preadv2, FIO_OP_READ)
ENTER(write, FIO_OP_WRITE)
ENTER(pwrite64, FIO_OP_WRITE)
ENTER(writev, FIO_OP_WRITE)
ENTER(pwritev, FIO_OP_WRITE)
ENTER(pwritev2, FIO_OP_WRITE)
ENTER(fsync, FIO_OP_FSYNC)
ENTER(fdatasync, FIO_OP_FSYNC)

/* Every call's exit (attached to each sys_exit_* of the calls above). */
SEC("tracepoint/syscalls/sys_exit_read")
int call_exit_tp(struct sonde_sys_exit *ctx)
{
	return call_exit(ctx);
}
