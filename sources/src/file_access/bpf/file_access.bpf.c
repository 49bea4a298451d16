// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * file_access: an audit of file opens, filtered in the kernel.
 *
 * Two objects: this one (kernels before 5.15) and file_access_args.bpf.c
 * (5.15+), which reads the call's arguments at its exit and has no entry
 * programs (see FA_ARGS_AT_EXIT below).
 *
 *   syscalls:sys_enter_{open,openat,openat2,creat}  the cgroup, process name
 *                                                   and flags policies; the
 *                                                   call's name and flags
 *                                                   kept for the exit
 *   syscalls:sys_exit_{open,openat,openat2,creat}   the opened file (from the
 *                                                   returned fd, so relative
 *                                                   names, symlinks and dirfds
 *                                                   resolve) against the path
 *                                                   policy, deduplicated, rate
 *                                                   limited per cgroup, sent
 *
 * A path policy is a set of directories (or files) identified by device and
 * inode, resolved by user space when the programs load: an open matches
 * when the opened file or one of its ancestors (dentries walked up, mounts
 * crossed) is in the set. No string is compared for a successful open; a
 * 64-bit mask of inode-number bits skips the map lookup for most levels.
 * Failed opens have no file: their requested name is compared with the
 * policy's prefixes as strings. Every open not sent is counted by reason.
 * Minimum kernel 5.8 (ring buffer).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "file_access.h"
#include "sonde_fd.h"
#include "sonde_rate.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set from user space before load. */
const volatile __u32 self_pid = 0;
const volatile __u8 use_cgroups = 0;
const volatile __u8 use_binaries = 0;
const volatile __u8 use_dirs = 0;
const volatile __u8 report_failed = 1;
/* FA_READ | FA_WRITE ...: report opens asking for any of these; 0: all. */
const volatile __u32 access_mask = 0;
/* Bit (ino & 63) of every policy directory's inode number. */
const volatile __u64 dir_bloom = 0;
const volatile __u64 dedup_ns = 0;
/* Events per second per cgroup; 0: no limit. */
const volatile __u32 rate_per_sec = 0;

struct fa_dir {
	__u64 ino;
	__u32 dev;
	__u32 _pad;
};

/* A prefix as 8-byte words and, per word, the mask of its bytes (all
 * zero for an unused slot). */
struct fa_prefix {
	__u64 words[FA_PREFIX_LEN / 8];
	__u64 masks[FA_PREFIX_LEN / 8];
};

struct fa_pending {
	__u64 filename;
	__u32 open_flags;
	__u32 access;
	__u32 op;
	__u32 _pad;
};

struct fa_dedup_key {
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__u32 access;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FA_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, __u8);
} fa_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FA_MAX_BINARIES);
	__type(key, char[16]);
	__type(value, __u8);
} fa_binaries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FA_MAX_DIRS);
	__type(key, struct fa_dir);
	__type(value, __u8);
} fa_dirs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FA_MAX_PREFIXES);
	__type(key, __u32);
	__type(value, struct fa_prefix);
} fa_prefixes SEC(".maps");

#ifndef FA_ARGS_AT_EXIT
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FA_MAX_PENDING);
	__type(key, __u32);
	__type(value, struct fa_pending);
} fa_pending_calls SEC(".maps");
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FA_DEDUP_ENTRIES);
	__type(key, struct fa_dedup_key);
	__type(value, __u64);
} fa_dedup SEC(".maps");

SONDE_RATE_MAP(fa_rate, FA_MAX_CGROUPS * 16);

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, FA_RING_BYTES);
} fa_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FA_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} fa_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&fa_stats, &stat);

	if (value)
		*value += 1;
}

/* ---- kernel types read by CO-RE (only the fields used) ---- */

struct kuid___fa {
	__u32 val;
};

struct cred___fa {
	struct kuid___fa uid;
} __attribute__((preserve_access_index));

struct task_struct___fa {
	const struct cred___fa *cred;
} __attribute__((preserve_access_index));

struct super_block___fa {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct inode___fa {
	unsigned long i_ino;
	struct super_block___fa *i_sb;
} __attribute__((preserve_access_index));

struct qstr___fa {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry___fa {
	struct dentry___fa *d_parent;
	struct qstr___fa d_name;
	struct inode___fa *d_inode;
} __attribute__((preserve_access_index));

struct vfsmount___fa {
	struct dentry___fa *mnt_root;
} __attribute__((preserve_access_index));

struct mount___fa {
	struct mount___fa *mnt_parent;
	struct dentry___fa *mnt_mountpoint;
	struct vfsmount___fa mnt;
} __attribute__((preserve_access_index));

struct path___fa {
	struct vfsmount___fa *mnt;
	struct dentry___fa *dentry;
} __attribute__((preserve_access_index));

struct file___fa {
	struct path___fa f_path;
	struct inode___fa *f_inode;
} __attribute__((preserve_access_index));

struct open_how___fa {
	__u64 flags;
};

/* Levels walked up when matching a path policy (two FA_STEP16). */
#define FA_WALK 32

#define O_ACCMODE___fa 3
#define O_WRONLY___fa 1
#define O_RDWR___fa 2
#define O_CREAT___fa 0100
#define O_TRUNC___fa 01000

static __always_inline struct mount___fa *real_mount(struct vfsmount___fa *vfsmount)
{
	return (void *)vfsmount - bpf_core_field_offset(struct mount___fa, mnt);
}

/* One level of the policy walk from `*dentry` in `*mnt`: 1 when it is a
 * policy directory, -1 at the global root, 0 to go on (one level up). */
static __always_inline int policy_step(struct dentry___fa **dentry, struct mount___fa **mnt)
{
	struct dentry___fa *d = *dentry, *parent;
	struct mount___fa *m = *mnt, *up;
	struct fa_dir dir = {};
	struct inode___fa *inode;

	if (!d)
		return -1;
	inode = BPF_CORE_READ(d, d_inode);
	dir.ino = BPF_CORE_READ(inode, i_ino);
	if (dir_bloom & (1ULL << (dir.ino & 63))) {
		dir.dev = BPF_CORE_READ(inode, i_sb, s_dev);
		if (bpf_map_lookup_elem(&fa_dirs, &dir))
			return 1;
	}
	if (d == BPF_CORE_READ(m, mnt.mnt_root)) {
		/* A mount's root: go on from where it is mounted. */
		up = BPF_CORE_READ(m, mnt_parent);
		if (!up || up == m)
			return -1;
		*dentry = BPF_CORE_READ(m, mnt_mountpoint);
		*mnt = up;
		return 0;
	}
	parent = BPF_CORE_READ(d, d_parent);
	if (parent == d)
		return -1;
	*dentry = parent;
	return 0;
}

/* Whether `file` or one of its ancestors is a policy directory, within
 * FA_WALK levels. Written out level by level, not as a loop: nothing in a
 * level depends on a counter, and kernels before about 6.13 take two such
 * iterations with unknown pointers for an infinite loop. */
static __always_inline int under_policy(struct file___fa *file)
{
	struct dentry___fa *dentry = BPF_CORE_READ(file, f_path.dentry);
	struct mount___fa *mnt = real_mount(BPF_CORE_READ(file, f_path.mnt));
	int step;

#define FA_STEP                                      \
	step = policy_step(&dentry, &mnt);           \
	if (step)                                    \
		return step > 0;
#define FA_STEP4 FA_STEP FA_STEP FA_STEP FA_STEP
#define FA_STEP16 FA_STEP4 FA_STEP4 FA_STEP4 FA_STEP4
	FA_STEP16
	FA_STEP16
	return 0;
}

/* A file's path-policy verdict, remembered for FA_VERDICT_NS: an open
 * storm on one file walks its path once, not at every open. A file moved
 * in or out of a policy directory keeps its old verdict that long. */
struct fa_verdict {
	__u64 ns;
	__u64 matched;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FA_VERDICT_ENTRIES);
	__type(key, struct fa_dir);
	__type(value, struct fa_verdict);
} fa_verdicts SEC(".maps");

static __always_inline int policy_verdict(struct file___fa *file, __u64 ino, __u32 dev, __u64 now)
{
	struct fa_dir key = { .ino = ino, .dev = dev };
	struct fa_verdict *known = bpf_map_lookup_elem(&fa_verdicts, &key), fresh = { .ns = now };

	if (known && now - known->ns < FA_VERDICT_NS)
		return known->matched;
	fresh.matched = under_policy(file);
	bpf_map_update_elem(&fa_verdicts, &key, &fresh, BPF_ANY);
	return fresh.matched;
}

/* The names of `file`'s dentries into `e->path`, the file's own first, up
 * to the global root; a step that crosses from a mount's root to where it
 * is mounted leaves its slot empty (user space skips those). Slots are
 * indexed by the loop counter alone, so the verifier's states at the loop
 * head match from one walk to the next. Not inlined: a function taking
 * `struct fa_event *` puts the struct in the object's BTF, where the Rust
 * mirror is checked against it. */
static __noinline void walk_names(struct fa_event *e, struct file___fa *file)
{
	struct dentry___fa *dentry = BPF_CORE_READ(file, f_path.dentry), *parent;
	struct mount___fa *mnt = real_mount(BPF_CORE_READ(file, f_path.mnt)), *up;
	const unsigned char *name;

	e->depth = FA_DEPTH + 1;
	for (__u32 i = 0; i < FA_DEPTH; i++) {
		e->path[i][0] = 0;
		if (!dentry) {
			e->depth = i;
			return;
		}
		if (dentry == BPF_CORE_READ(mnt, mnt.mnt_root)) {
			up = BPF_CORE_READ(mnt, mnt_parent);
			if (!up || up == mnt) {
				e->depth = i;
				return;
			}
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			continue;
		}
		parent = BPF_CORE_READ(dentry, d_parent);
		if (parent == dentry) {
			e->depth = i;
			return;
		}
		name = BPF_CORE_READ(dentry, d_name.name);
		if (name)
			bpf_probe_read_kernel_str(e->path[i], FA_NAME_LEN, name);
		dentry = parent;
	}
}

/* Whether `request` starts with prefix `p`: compared 8 bytes at a time
 * under the prefix's byte masks (set by user space), without a loop (see
 * under_policy). */
static __always_inline int request_has_prefix(const __u64 *request, __u32 p)
{
	struct fa_prefix *prefix = bpf_map_lookup_elem(&fa_prefixes, &p);
	__u64 differ = 0;

	if (!prefix || !prefix->masks[0])
		return 0;
#define FA_WORD(k) differ |= (request[k] ^ prefix->words[k]) & prefix->masks[k];
	FA_WORD(0) FA_WORD(1) FA_WORD(2) FA_WORD(3) FA_WORD(4) FA_WORD(5) FA_WORD(6) FA_WORD(7)
	return !differ;
}

/* Whether the failed call's requested name starts with a policy prefix. */
static __always_inline int request_under_policy(const char *request)
{
	const __u64 *words = (const __u64 *)request;

	return request_has_prefix(words, 0) || request_has_prefix(words, 1) || request_has_prefix(words, 2) ||
	       request_has_prefix(words, 3) || request_has_prefix(words, 4) || request_has_prefix(words, 5) ||
	       request_has_prefix(words, 6) || request_has_prefix(words, 7);
}

static __always_inline __u32 access_of(__u32 flags)
{
	__u32 access = 0;

	switch (flags & O_ACCMODE___fa) {
	case O_WRONLY___fa:
		access = FA_WRITE;
		break;
	case O_RDWR___fa:
		access = FA_READ | FA_WRITE;
		break;
	default:
		access = FA_READ;
	}
	if (flags & O_CREAT___fa)
		access |= FA_CREATE;
	if (flags & O_TRUNC___fa)
		access |= FA_TRUNCATE;
	return access;
}

/* The entry policies (process, cgroup, process name, flags) for an open
 * asking for `flags`: what it asks for (FA_READ ...), or 0 when it is left
 * out (counted). */
static __always_inline __u32 open_wanted(__u64 id, __u32 flags)
{
	__u32 access;

	if ((id >> 32) == self_pid)
		return 0;
	if (use_cgroups) {
		__u64 cgroup = bpf_get_current_cgroup_id();

		if (!bpf_map_lookup_elem(&fa_cgroups, &cgroup)) {
			count(FA_STAT_FILTERED_CGROUP);
			return 0;
		}
	}
	if (use_binaries) {
		char comm[16] = {};

		bpf_get_current_comm(comm, sizeof(comm));
		if (!bpf_map_lookup_elem(&fa_binaries, comm)) {
			count(FA_STAT_FILTERED_BINARY);
			return 0;
		}
	}
	access = access_of(flags);
	if (access_mask && !(access & access_mask)) {
		count(FA_STAT_FILTERED_FLAGS);
		return 0;
	}
	return access;
}

/* An open that passed the entry policies, at its return `ret`: the path
 * policy, dedup and rate limit, then the event. */
static __always_inline int open_done(__u64 id, __s64 ret, __u64 filename, __u32 open_flags, __u32 access, __u32 op)
{
	__u64 now = bpf_ktime_get_ns(), cgroup;
	__u32 tid = (__u32)id, pid = id >> 32;
	struct task_struct___fa *task;
	struct file___fa *file = 0;
	struct inode___fa *inode;
	struct fa_event *e;
	__u64 ino = 0;
	__u32 dev = 0;

	if (ret >= 0) {
		file = sonde_fd_file(ret);
		if (!file)
			return 0;
		/* f_inode: the opened inode, one read fewer than via the dentry. */
		inode = BPF_CORE_READ(file, f_inode);
		ino = BPF_CORE_READ(inode, i_ino);
		dev = BPF_CORE_READ(inode, i_sb, s_dev);
		if (use_dirs && !policy_verdict(file, ino, dev, now)) {
			count(FA_STAT_FILTERED_PATH);
			return 0;
		}
		if (dedup_ns) {
			struct fa_dedup_key key = { .ino = ino, .dev = dev, .pid = pid, .access = access };

			if (sonde_seen_within(&fa_dedup, &key, now, dedup_ns)) {
				count(FA_STAT_DEDUPLICATED);
				return 0;
			}
		}
	} else if (!report_failed) {
		count(FA_STAT_FILTERED_FAILED);
		return 0;
	}
	cgroup = bpf_get_current_cgroup_id();
	if (!sonde_within_rate(&fa_rate, cgroup, now, rate_per_sec)) {
		count(FA_STAT_THROTTLED);
		return 0;
	}
	e = bpf_ringbuf_reserve(&fa_events, sizeof(*e), 0);
	if (!e) {
		count(FA_STAT_RING_FULL);
		return 0;
	}
	e->mono_ns = now;
	e->cgroup_id = cgroup;
	e->ino = ino;
	e->dev = dev;
	e->pid = pid;
	e->tid = tid;
	task = (void *)bpf_get_current_task();
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->ret = (__s32)ret;
	e->open_flags = open_flags;
	e->access = access;
	e->op = op;
	e->_pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->request[0] = 0;
	if (file) {
		walk_names(e, file);
	} else {
		e->depth = 0;
		if (bpf_probe_read_user_str(e->request, sizeof(e->request), (void *)filename) < 0)
			e->request[0] = 0;
		if (use_dirs && !request_under_policy(e->request)) {
			bpf_ringbuf_discard(e, 0);
			count(FA_STAT_FILTERED_PATH);
			return 0;
		}
	}
	bpf_ringbuf_submit(e, 0);
	return 0;
}

#define FA_CREAT_FLAGS (O_CREAT___fa | O_WRONLY___fa | O_TRUNC___fa)

#ifdef FA_ARGS_AT_EXIT
/*
 * Kernel 5.15+ (bpf_task_pt_regs): exit programs only. A syscall's
 * arguments are still in the registers the task entered the kernel with
 * when the call returns (the return value goes to ax, never over an
 * argument, see sonde_args.h), so no entry program runs and nothing is
 * kept per call: one tracepoint and no map update per open instead of two
 * and two.
 */
#include "sonde_args.h"

static __always_inline int exit_with(struct sonde_sys_exit *ctx, __u64 filename, __u32 flags, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 access = open_wanted(id, flags);

	if (!access)
		return 0;
	return open_done(id, ctx->ret, filename, flags, access, op);
}

SEC("tracepoint/syscalls/sys_exit_open")
int exit_open(struct sonde_sys_exit *ctx)
{
	struct pt_regs___sonde_args *regs = sonde_entry_regs();

	return exit_with(ctx, SONDE_ARG0(regs), (__u32)SONDE_ARG1(regs), FA_OP_OPEN);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct sonde_sys_exit *ctx)
{
	struct pt_regs___sonde_args *regs = sonde_entry_regs();

	return exit_with(ctx, SONDE_ARG1(regs), (__u32)SONDE_ARG2(regs), FA_OP_OPENAT);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int exit_openat2(struct sonde_sys_exit *ctx)
{
	struct pt_regs___sonde_args *regs = sonde_entry_regs();
	struct open_how___fa how = {};

	bpf_probe_read_user(&how, sizeof(how), (void *)SONDE_ARG2(regs));
	return exit_with(ctx, SONDE_ARG1(regs), (__u32)how.flags, FA_OP_OPENAT2);
}

SEC("tracepoint/syscalls/sys_exit_creat")
int exit_creat(struct sonde_sys_exit *ctx)
{
	return exit_with(ctx, SONDE_ARG0(sonde_entry_regs()), FA_CREAT_FLAGS, FA_OP_CREAT);
}

#else
/* Kernels before 5.15: the entry policies at entry, the call's name and
 * flags kept per thread until its exit. */
static __always_inline int call_enter(__u64 filename, __u32 flags, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct fa_pending pending = { .filename = filename, .open_flags = flags, .op = op };

	pending.access = open_wanted(id, flags);
	if (!pending.access)
		return 0;
	if (bpf_map_update_elem(&fa_pending_calls, &tid, &pending, BPF_ANY))
		count(FA_STAT_PENDING_FULL);
	return 0;
}

static __always_inline int call_exit(struct sonde_sys_exit *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct fa_pending *pending = bpf_map_lookup_elem(&fa_pending_calls, &tid);

	if (!pending)
		return 0;
	open_done(id, ctx->ret, pending->filename, pending->open_flags, pending->access, pending->op);
	bpf_map_delete_elem(&fa_pending_calls, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int enter_open(struct sonde_sys_enter *ctx)
{
	return call_enter(ctx->args[0], (__u32)ctx->args[1], FA_OP_OPEN);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct sonde_sys_enter *ctx)
{
	return call_enter(ctx->args[1], (__u32)ctx->args[2], FA_OP_OPENAT);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int enter_openat2(struct sonde_sys_enter *ctx)
{
	struct open_how___fa how = {};

	bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]);
	return call_enter(ctx->args[1], (__u32)how.flags, FA_OP_OPENAT2);
}

SEC("tracepoint/syscalls/sys_enter_creat")
int enter_creat(struct sonde_sys_enter *ctx)
{
	return call_enter(ctx->args[0], FA_CREAT_FLAGS, FA_OP_CREAT);
}

/* Every open's exit (attached to each sys_exit_* of the calls above). */
SEC("tracepoint/syscalls/sys_exit_openat")
int call_exit_tp(struct sonde_sys_exit *ctx)
{
	return call_exit(ctx);
}
#endif
