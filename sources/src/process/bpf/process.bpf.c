// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * process: process lifecycle records for the `process` source (and the
 * ancestry the others reuse), from three raw tracepoints:
 *
 *   sched_process_exec   (task, old_pid, bprm): one record per exec, with
 *                        the binary (bprm->file, resolved by a dentry walk),
 *                        argv (mm->arg_start..arg_end, a byte-exact prefix),
 *                        cwd (fs->pwd), credentials, login uid, cgroup
 *   sched_process_fork   (parent, child): the child's identity into
 *                        `proc_keys`; a record only with `emit_forks`
 *   sched_process_exit   (task, ...): a record only for the last thread of
 *                        the process (signal->live == 0: do_exit decrements
 *                        it before this tracepoint), with the status wait(2)
 *                        would report
 *
 * raw tracepoints with CO-RE reads: the same object loads from 5.8 (ring
 * buffer, bpf_ktime_get_boot_ns) on, with no dependence on the tracepoints'
 * event formats (which change: sched_process_exit gained group_dead in
 * 6.x). Kernel threads are left out. Filters (cgroup ids, binary names)
 * and a per-cgroup exec rate limit drop records here, counted.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "sonde_ring.h"
#include "process.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

_Static_assert(PROC_PATH_BUF == PROC_PATH_MAX + PROC_NAME_MAX, "path buffer slack");

/* Set from user space before load. */
/* Bytes of argv kept (at most PROC_ARGS_MAX). */
const volatile __u32 args_max = PROC_ARGS_MAX;
/* Send a record for each new process (fork). */
const volatile __u8 emit_forks = 0;
/* Only processes in the cgroups of `proc_cgroups`. */
const volatile __u8 filter_cgroups = 0;
/* Only processes whose name is in `proc_binaries` as included. */
const volatile __u8 filter_binaries = 0;
/* Some names in `proc_binaries` are excluded. */
const volatile __u8 filter_exclude = 0;
/* Wake user space when this many bytes wait (else its timer drains). */
const volatile __u64 wakeup_bytes = PROC_RING_BYTES / 4;
/* Execs per second per cgroup; 0: no limit. */
const volatile __u64 rate_limit = 0;

/* Only for the object's BTF: abi.rs checks the Rust mirror against it
 * (a type used only on the stack is not described). */
struct proc_exit proc_exit_layout;

#define PF_KTHREAD 0x00200000
#define SIGNAL_GROUP_EXIT 0x00000004
#define NS_PER_SEC 1000000000ULL

/* ---- the kernel's structs, as far as read (CO-RE) ---- */

struct qstr___proc {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry___proc {
	struct dentry___proc *d_parent;
	struct qstr___proc d_name;
} __attribute__((preserve_access_index));

struct vfsmount___proc {
	struct dentry___proc *mnt_root;
} __attribute__((preserve_access_index));

struct mount___proc {
	struct mount___proc *mnt_parent;
	struct dentry___proc *mnt_mountpoint;
	struct vfsmount___proc mnt;
} __attribute__((preserve_access_index));

struct path___proc {
	struct vfsmount___proc *mnt;
	struct dentry___proc *dentry;
} __attribute__((preserve_access_index));

struct file___proc {
	struct path___proc f_path;
} __attribute__((preserve_access_index));

struct fs_struct___proc {
	struct path___proc pwd;
} __attribute__((preserve_access_index));

struct linux_binprm___proc {
	struct file___proc *file;
} __attribute__((preserve_access_index));

struct mm_struct___proc {
	unsigned long arg_start;
	unsigned long arg_end;
} __attribute__((preserve_access_index));

struct kuid___proc {
	unsigned int val;
} __attribute__((preserve_access_index));

struct cred___proc {
	struct kuid___proc uid;
	struct kuid___proc euid;
	struct kuid___proc gid;
	struct kuid___proc egid;
} __attribute__((preserve_access_index));

struct atomic___proc {
	int counter;
} __attribute__((preserve_access_index));

struct signal_struct___proc {
	struct atomic___proc live;
	unsigned int flags;
	int group_exit_code;
} __attribute__((preserve_access_index));

struct task_struct___proc {
	unsigned int flags;
	int pid;
	int tgid;
	int exit_code;
	__u64 start_boottime;
	struct task_struct___proc *real_parent;
	struct task_struct___proc *group_leader;
	struct mm_struct___proc *mm;
	struct fs_struct___proc *fs;
	struct signal_struct___proc *signal;
	const struct cred___proc *real_cred;
	struct kuid___proc loginuid;
} __attribute__((preserve_access_index));

/* ---- maps ---- */

/* Each live process' identity (tgid →), from its exec or fork to its exit. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROC_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct proc_key);
} proc_keys SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROC_RING_BYTES);
} proc_events SEC(".maps");

/* Where an exec record is built (too large for the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct proc_exec);
} proc_scratch SEC(".maps");

/* cgroup ids whose processes are reported (with `filter_cgroups`). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROC_MAX_FILTERS);
	__type(key, __u64);
	__type(value, __u8);
} proc_cgroups SEC(".maps");

/* Process names (comm: the exec'd file's name, 15 bytes) included or
 * excluded (PROC_BINARY_*). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROC_MAX_FILTERS);
	__type(key, char[16]);
	__type(value, __u8);
} proc_binaries SEC(".maps");

/* Exec rate per cgroup (with `rate_limit`); least recently used go. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PROC_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct proc_rate);
} proc_rates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROC_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} proc_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&proc_stats, &stat);

	/* Atomic although per CPU: a program can be preempted (it runs with
	 * migration, not preemption, disabled) and another run on this CPU. */
	if (value)
		__sync_fetch_and_add(value, 1);
}

/* ---- filters ---- */

/* Whether the process (after its exec: its new comm) is left out. */
static __always_inline int filtered(__u64 cgroup_id, const char *comm)
{
	__u8 *verdict;

	if (filter_cgroups && !bpf_map_lookup_elem(&proc_cgroups, &cgroup_id))
		return 1;
	if (!filter_binaries && !filter_exclude)
		return 0;
	verdict = bpf_map_lookup_elem(&proc_binaries, comm);
	if (verdict && *verdict == PROC_BINARY_EXCLUDE)
		return 1;
	if (filter_binaries && !(verdict && *verdict == PROC_BINARY_INCLUDE))
		return 1;
	return 0;
}

/* PROC_DROP_FILTERED when the filters leave the current process out. */
static __always_inline __u32 current_filtered(void)
{
	char comm[16];

	if (!filter_cgroups && !filter_binaries && !filter_exclude)
		return 0;
	bpf_get_current_comm(comm, sizeof(comm));
	return filtered(bpf_get_current_cgroup_id(), comm) ? PROC_DROP_FILTERED : 0;
}

/* Whether this exec is over its cgroup's rate (one-second windows). */
static __always_inline int throttled(__u64 cgroup_id, __u64 now)
{
	struct proc_rate fresh = { .window_ns = now, .count = 1 }, *rate;

	if (!rate_limit)
		return 0;
	rate = bpf_map_lookup_elem(&proc_rates, &cgroup_id);
	if (!rate) {
		bpf_map_update_elem(&proc_rates, &cgroup_id, &fresh, BPF_ANY);
		return 0;
	}
	/* Racy between CPUs at a window's turn: a few execs either way. */
	if (now - rate->window_ns >= NS_PER_SEC) {
		rate->window_ns = now;
		rate->count = 0;
	}
	/* No fetching atomics (5.12+): add, then read (racy, a few either way). */
	__sync_fetch_and_add(&rate->count, 1);
	if (rate->count <= rate_limit)
		return 0;
	__sync_fetch_and_add(&rate->throttled, 1);
	return 1;
}

/* ---- reading ---- */

/* Writes the components of `path`, leaf first, each NUL-terminated, into
 * `buf` (PROC_PATH_BUF bytes), crossing mounts up to the root of the
 * caller's mount namespace. Returns the bytes written; sets `truncated`
 * in `flags` when the walk stopped early. The running length lives in
 * `*off`, map memory the verifier does not track: each iteration then
 * looks alike to it, and the states of the loop prune (kept in a register,
 * its exact values multiply the states past the 1M-instruction limit on
 * 6.1). */
static __always_inline __u32 walk_path(struct path___proc *path, char *buf, volatile __u32 *off, __u32 *flags,
				       __u32 truncated)
{
	struct vfsmount___proc *vfsmnt = BPF_CORE_READ(path, mnt);
	struct dentry___proc *dentry = BPF_CORE_READ(path, dentry);
	__u64 mnt_offset = bpf_core_field_offset(struct mount___proc, mnt);
	struct mount___proc *mnt = (void *)vfsmnt - mnt_offset;
	int i;

	*off = 0;
	for (i = 0; i < PROC_PATH_DEPTH; i++) {
		struct dentry___proc *root = BPF_CORE_READ(vfsmnt, mnt_root);
		struct dentry___proc *parent = BPF_CORE_READ(dentry, d_parent);
		const unsigned char *name;
		__u32 at;
		long n;

		if (!dentry)
			return *off;
		if (dentry == root || dentry == parent) {
			struct mount___proc *up = BPF_CORE_READ(mnt, mnt_parent);

			/* The top of the namespace's root mount: done. */
			if (dentry != root || !up || up == mnt)
				return *off;
			dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			vfsmnt = (void *)up + mnt_offset;
			continue;
		}
		at = *off;
		if (at >= PROC_PATH_MAX) {
			*flags |= truncated;
			return at;
		}
		name = BPF_CORE_READ(dentry, d_name.name);
		n = bpf_probe_read_kernel_str(buf + (at & (PROC_PATH_MAX - 1)), PROC_NAME_MAX, name);
		if (n <= 0)
			return at;
		*off = at + (n & (PROC_NAME_MAX - 1 + PROC_NAME_MAX));
		dentry = parent;
	}
	*flags |= truncated;
	return *off;
}

static __always_inline void fill_head(struct proc_head *head, __u32 kind, struct task_struct___proc *task, __u64 now)
{
	head->kind = kind;
	head->flags = 0;
	head->pid = BPF_CORE_READ(task, tgid);
	head->tid = BPF_CORE_READ(task, pid);
	head->time_ns = now;
	head->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	head->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(head->comm, sizeof(head->comm));
}

/* The identity of `task`'s parent, as `proc_keys` knows it. */
static __always_inline void parent_of(struct task_struct___proc *task, struct proc_key *key)
{
	struct task_struct___proc *parent = BPF_CORE_READ(task, real_parent);
	struct proc_key *known;
	__u32 ppid = BPF_CORE_READ(parent, tgid);

	key->ppid = ppid;
	key->parent_start_ns = BPF_CORE_READ(parent, group_leader, start_boottime);
	known = bpf_map_lookup_elem(&proc_keys, &ppid);
	key->parent_key_ns = known ? known->key_ns : 0;
}

/* Wake user space once per quarter of the ring filled (sonde_ring.h); its
 * 100 ms timer picks up the rest. */
static __always_inline __u64 wakeup(__u64 size)
{
	return sonde_ring_wakeup(bpf_ringbuf_query(&proc_events, BPF_RB_AVAIL_DATA), size, wakeup_bytes);
}

static __always_inline void keep_key(__u32 pid, struct proc_key *key)
{
	if (bpf_map_update_elem(&proc_keys, &pid, key, BPF_ANY))
		count(PROC_STAT_KEYS_FULL);
}

/* ---- programs ---- */

SEC("raw_tracepoint/sched_process_exec")
int process_exec(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct___proc *task = (void *)ctx->args[0];
	struct linux_binprm___proc *bprm = (void *)ctx->args[2];
	const struct cred___proc *cred;
	struct mm_struct___proc *mm;
	struct fs_struct___proc *fs;
	struct file___proc *file;
	struct proc_exec *e;
	__u64 now = bpf_ktime_get_boot_ns(), start, end, len;
	__u32 zero = 0, size;

	e = bpf_map_lookup_elem(&proc_scratch, &zero);
	if (!e)
		return 0;
	fill_head(&e->head, PROC_EVENT_EXEC, task, now);
	e->head.key.key_ns = now;
	parent_of(task, &e->head.key);
	e->head.key.flags = 0;
	if (filtered(e->head.cgroup_id, e->head.comm))
		e->head.key.flags = PROC_DROP_FILTERED;
	else if (throttled(e->head.cgroup_id, now))
		e->head.key.flags = PROC_DROP_THROTTLED;
	keep_key(e->head.pid, &e->head.key);
	if (e->head.key.flags) {
		count(e->head.key.flags == PROC_DROP_FILTERED ? PROC_STAT_FILTERED : PROC_STAT_THROTTLED);
		return 0;
	}

	cred = BPF_CORE_READ(task, real_cred);
	e->uid = BPF_CORE_READ(cred, uid.val);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->gid = BPF_CORE_READ(cred, gid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	/* CONFIG_AUDIT(SYSCALL): without it, no login uid. */
	e->auid = bpf_core_field_exists(task->loginuid) ? BPF_CORE_READ(task, loginuid.val) : (__u32)-1;

	/* Address arithmetic only (CO-RE offsets): walk_path reads. */
	file = BPF_CORE_READ(bprm, file);
	fs = BPF_CORE_READ(task, fs);
	e->exe_len = walk_path(&file->f_path, e->exe, &e->_pad, &e->head.flags, PROC_FLAG_EXE_TRUNCATED);
	e->cwd_len = walk_path(&fs->pwd, e->cwd, &e->_pad, &e->head.flags, PROC_FLAG_CWD_TRUNCATED);
	e->_pad = 0;

	/* argv is on the new stack, just written by the kernel: present. */
	mm = BPF_CORE_READ(task, mm);
	start = BPF_CORE_READ(mm, arg_start);
	end = BPF_CORE_READ(mm, arg_end);
	len = end > start ? end - start : 0;
	if (len > args_max) {
		len = args_max;
		e->head.flags |= PROC_FLAG_ARGS_TRUNCATED;
	}
	if (len > PROC_ARGS_MAX)
		len = PROC_ARGS_MAX;
	if (len && bpf_probe_read_user(e->args, len, (void *)start)) {
		count(PROC_STAT_ARGS_FAILED);
		e->head.flags |= PROC_FLAG_ARGS_FAILED;
		len = 0;
	}
	e->args_len = len;
	size = __builtin_offsetof(struct proc_exec, args) + (len & (2 * PROC_ARGS_MAX - 1));
	if (size > sizeof(*e))
		size = sizeof(*e);
	if (bpf_ringbuf_output(&proc_events, e, size, wakeup(size)))
		count(PROC_STAT_RINGBUF_FULL);
	return 0;
}

SEC("raw_tracepoint/sched_process_fork")
int process_fork(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct___proc *child = (void *)ctx->args[1];
	struct proc_fork record = {};
	struct proc_key key = {};
	struct proc_key *parent_key;
	__u32 pid, tgid;

	count(PROC_STAT_CLONES);
	pid = BPF_CORE_READ(child, pid);
	tgid = BPF_CORE_READ(child, tgid);
	/* A thread, or a kernel thread: no process of interest. */
	if (pid != tgid || (BPF_CORE_READ(child, flags) & PF_KTHREAD))
		return 0;
	key.key_ns = BPF_CORE_READ(child, start_boottime);
	parent_of(child, &key);
	/* A child of a left-out process is left out too, until it execs; a
	 * parent the map does not know (it predates the programs) is judged
	 * now, in its own context. */
	parent_key = bpf_map_lookup_elem(&proc_keys, &key.ppid);
	key.flags = parent_key ? parent_key->flags : current_filtered();
	keep_key(tgid, &key);
	if (!emit_forks)
		return 0;
	if (key.flags) {
		count(key.flags == PROC_DROP_FILTERED ? PROC_STAT_FILTERED : PROC_STAT_THROTTLED);
		return 0;
	}
	record.head.kind = PROC_EVENT_FORK;
	record.head.pid = tgid;
	record.head.tid = pid;
	record.head.time_ns = key.key_ns;
	record.head.key = key;
	record.head.start_ns = key.key_ns;
	/* The child runs in its parent's cgroup (CLONE_INTO_CGROUP aside). */
	record.head.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(record.head.comm, sizeof(record.head.comm));
	if (bpf_ringbuf_output(&proc_events, &record, sizeof(record), wakeup(sizeof(record))))
		count(PROC_STAT_RINGBUF_FULL);
	return 0;
}

SEC("raw_tracepoint/sched_process_exit")
int process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct___proc *task = (void *)ctx->args[0];
	struct signal_struct___proc *signal;
	struct proc_exit record = {};
	struct proc_key *key;
	__u32 pid;

	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return 0;
	signal = BPF_CORE_READ(task, signal);
	/* Not the last thread: the process lives on. */
	if (BPF_CORE_READ(signal, live.counter) != 0)
		return 0;
	pid = BPF_CORE_READ(task, tgid);
	key = bpf_map_lookup_elem(&proc_keys, &pid);
	if (key) {
		record.head.key = *key;
		bpf_map_delete_elem(&proc_keys, &pid);
	} else {
		/* It predates the programs: judged now, in its own context. */
		record.head.flags = PROC_FLAG_KEY_UNKNOWN;
		record.head.key.flags = current_filtered();
		parent_of(task, &record.head.key);
	}
	if (record.head.key.flags) {
		count(record.head.key.flags == PROC_DROP_FILTERED ? PROC_STAT_FILTERED : PROC_STAT_THROTTLED);
		return 0;
	}
	fill_head(&record.head, PROC_EVENT_EXIT, task, bpf_ktime_get_boot_ns());
	if (!key)
		record.head.flags = PROC_FLAG_KEY_UNKNOWN;
	/* What wait(2) reports: the group's code after exit_group or a fatal
	 * signal, else the leader's own (it may have exited long before). */
	if (BPF_CORE_READ(signal, flags) & SIGNAL_GROUP_EXIT)
		record.status = BPF_CORE_READ(signal, group_exit_code);
	else
		record.status = BPF_CORE_READ(task, group_leader, exit_code);
	if (bpf_ringbuf_output(&proc_events, &record, sizeof(record), wakeup(sizeof(record))))
		count(PROC_STAT_RINGBUF_FULL);
	return 0;
}
