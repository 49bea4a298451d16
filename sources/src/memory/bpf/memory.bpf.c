// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * memory: allocation patterns, aggregated in the kernel.
 *
 *   kmem:mm_page_alloc, kmem:mm_page_free   page allocations and frees by
 *                                           order, per process (every event:
 *                                           one hash lookup and an add, no
 *                                           sampling)
 *   uprobes on libc malloc, calloc, realloc, free, attached by user space to
 *   chosen processes only: sizes, rate, and the bytes not yet freed per
 *   allocation stack (bpf_get_stackid, frame pointers: the memleak view),
 *   with a cap of tracked allocations per process.
 *
 * Minimum kernel 5.5 (BTF, bpf_probe_read_kernel); uprobes 4.x.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "memory.h"
#include "sonde_slot.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set from user space before load: tracked allocations per process. */
const volatile __s64 per_process_cap = MEM_PER_PROCESS_CAP;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MEM_MAX_PAGE_KEYS);
	__type(key, struct mem_page_key);
	__type(value, struct mem_page_counts);
} mem_pages SEC(".maps");

/* Processes whose allocations are traced (user space fills it). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MEM_MAX_TARGETS);
	__type(key, __u32);
	__type(value, struct mem_proc);
} mem_procs SEC(".maps");

/* Sizes asked by threads inside malloc/calloc/realloc, by thread id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MEM_MAX_TARGETS * 16);
	__type(key, __u32);
	__type(value, __u64);
} mem_pending SEC(".maps");

struct mem_alloc_key {
	__u64 ptr;
	__u32 pid;
	__u32 _pad;
};

struct mem_alloc {
	__u64 size;
	struct mem_stack_key stack;
};

/* Allocations not yet freed. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MEM_MAX_ALLOCS);
	__type(key, struct mem_alloc_key);
	__type(value, struct mem_alloc);
} mem_allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MEM_MAX_STACKS);
	__type(key, struct mem_stack_key);
	__type(value, struct mem_outstanding);
} mem_outstanding SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, MEM_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MEM_STACK_DEPTH * sizeof(__u64));
} mem_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MEM_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} mem_stats SEC(".maps");

static const struct mem_page_counts zero_pages;

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&mem_stats, &stat);

	if (value)
		*value += 1;
}

/* ---- pages ---- */

struct trace_event_raw_mm_page_alloc___sonde {
	unsigned int order;
} __attribute__((preserve_access_index));

struct trace_event_raw_mm_page_free___sonde {
	unsigned int order;
} __attribute__((preserve_access_index));

static __always_inline struct mem_page_counts *pages_now(void)
{
	struct mem_page_key key = {};
	struct mem_page_counts *counts;
	long err;

	key.pid = bpf_get_current_pid_tgid() >> 32;
	key.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	counts = bpf_map_lookup_elem(&mem_pages, &key);
	if (counts)
		return counts;
	err = bpf_map_update_elem(&mem_pages, &key, &zero_pages, BPF_NOEXIST);
	if (err && err != -17)
		count(MEM_STAT_PAGE_KEYS_FULL);
	return bpf_map_lookup_elem(&mem_pages, &key);
}

static __always_inline __u32 order_slot(unsigned int order)
{
	return order < MEM_ORDERS - 1 ? order : MEM_ORDERS - 1;
}

SEC("tracepoint/kmem/mm_page_alloc")
int mm_page_alloc(struct trace_event_raw_mm_page_alloc___sonde *ctx)
{
	/* Read before the calls: a context load from a moved pointer is refused. */
	__u32 slot = order_slot(ctx->order);
	struct mem_page_counts *counts;

	asm volatile("" : "+r"(slot));
	counts = pages_now();
	if (counts && slot < MEM_ORDERS)
		counts->allocs[slot] += 1;
	return 0;
}

SEC("tracepoint/kmem/mm_page_free")
int mm_page_free(struct trace_event_raw_mm_page_free___sonde *ctx)
{
	/* Read before the calls: a context load from a moved pointer is refused. */
	__u32 slot = order_slot(ctx->order);
	struct mem_page_counts *counts;

	asm volatile("" : "+r"(slot));
	counts = pages_now();
	if (counts && slot < MEM_ORDERS)
		counts->frees[slot] += 1;
	return 0;
}

/* ---- user-space allocations (uprobes, chosen processes only) ---- */

static __always_inline void remember_size(__u64 size)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_update_elem(&mem_pending, &tid, &size, BPF_ANY);
}

/* An allocation is freed: its bytes leave its stack's outstanding total. */
static __always_inline void on_free(__u32 pid, __u64 ptr)
{
	struct mem_alloc_key key = { .ptr = ptr, .pid = pid };
	struct mem_outstanding *out;
	struct mem_alloc *alloc;
	struct mem_proc *proc;

	if (!ptr)
		return;
	proc = bpf_map_lookup_elem(&mem_procs, &pid);
	if (!proc)
		return;
	__sync_fetch_and_add(&proc->frees, 1);
	alloc = bpf_map_lookup_elem(&mem_allocs, &key);
	if (!alloc)
		return;
	out = bpf_map_lookup_elem(&mem_outstanding, &alloc->stack);
	if (out) {
		__sync_fetch_and_add(&out->bytes, -(__s64)alloc->size);
		__sync_fetch_and_add(&out->allocs, -1);
	}
	bpf_map_delete_elem(&mem_allocs, &key);
	__sync_fetch_and_add(&proc->tracked, -1);
}

/* An allocation returned `ptr`: counted, sized, and tracked by stack. */
static __always_inline int on_alloc_return(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid(), ptr = PT_REGS_RC(ctx), size;
	__u32 pid = id >> 32, tid = (__u32)id;
	struct mem_alloc_key key = { .pid = pid };
	struct mem_alloc alloc = { .stack = { .pid = pid } };
	struct mem_outstanding none = {}, *out;
	struct mem_proc *proc;
	__u64 *pending;
	long id_or_err;

	pending = bpf_map_lookup_elem(&mem_pending, &tid);
	if (!pending) {
		count(MEM_STAT_NO_ENTRY);
		return 0;
	}
	size = *pending;
	bpf_map_delete_elem(&mem_pending, &tid);
	proc = bpf_map_lookup_elem(&mem_procs, &pid);
	if (!proc || !ptr)
		return 0;
	__sync_fetch_and_add(&proc->allocs, 1);
	__sync_fetch_and_add(&proc->alloc_bytes, size);
	__sync_fetch_and_add(&proc->size[sonde_slot(size, MEM_SIZE_MIN_SHIFT, MEM_SIZE_SLOTS)], 1);
	if (proc->tracked >= per_process_cap) {
		count(MEM_STAT_PROCESS_CAP);
		return 0;
	}
	/* At the return, the user stack starts in malloc's caller. */
	id_or_err = bpf_get_stackid(ctx, &mem_stacks, BPF_F_USER_STACK);
	if (id_or_err < 0)
		count(MEM_STAT_NO_STACK);
	alloc.stack.stack_id = id_or_err < 0 ? -1 : (__s32)id_or_err;
	alloc.size = size;
	key.ptr = ptr;
	/* A pointer handed out twice without a free seen: drop the old one. */
	on_free(pid, ptr);
	__sync_fetch_and_add(&proc->frees, -1);
	if (bpf_map_update_elem(&mem_allocs, &key, &alloc, BPF_NOEXIST)) {
		count(MEM_STAT_ALLOCS_FULL);
		return 0;
	}
	__sync_fetch_and_add(&proc->tracked, 1);
	out = bpf_map_lookup_elem(&mem_outstanding, &alloc.stack);
	if (!out) {
		if (bpf_map_update_elem(&mem_outstanding, &alloc.stack, &none, BPF_NOEXIST) &&
		    !bpf_map_lookup_elem(&mem_outstanding, &alloc.stack)) {
			count(MEM_STAT_OUTSTANDING_FULL);
			return 0;
		}
		out = bpf_map_lookup_elem(&mem_outstanding, &alloc.stack);
		if (!out)
			return 0;
	}
	__sync_fetch_and_add(&out->bytes, (__s64)size);
	__sync_fetch_and_add(&out->allocs, 1);
	return 0;
}

SEC("uprobe")
int malloc_enter(struct pt_regs *ctx)
{
	remember_size(PT_REGS_PARM1(ctx));
	return 0;
}

SEC("uprobe")
int calloc_enter(struct pt_regs *ctx)
{
	remember_size(PT_REGS_PARM1(ctx) * PT_REGS_PARM2(ctx));
	return 0;
}

/* realloc(ptr, size): the old block is freed, a new one allocated. */
SEC("uprobe")
int realloc_enter(struct pt_regs *ctx)
{
	on_free(bpf_get_current_pid_tgid() >> 32, PT_REGS_PARM1(ctx));
	remember_size(PT_REGS_PARM2(ctx));
	return 0;
}

SEC("uretprobe")
int alloc_return(struct pt_regs *ctx)
{
	return on_alloc_return(ctx);
}

SEC("uprobe")
int free_enter(struct pt_regs *ctx)
{
	on_free(bpf_get_current_pid_tgid() >> 32, PT_REGS_PARM1(ctx));
	return 0;
}

/* ---- page faults (perf software events, sampled) ---- */

/* Set from user space before load: take a user stack per fault sample. */
const volatile __u8 fault_stacks = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MEM_MAX_FAULT_KEYS);
	__type(key, struct mem_fault_key);
	__type(value, struct mem_fault_counts);
} mem_faults SEC(".maps");

static const struct mem_fault_counts zero_faults;

/* `period` faults of `kind` happened in the current process (one sample). */
static __always_inline void count_faults(struct bpf_perf_event_data *ctx, __u32 kind)
{
	struct mem_fault_key key = { .stack_id = -1 };
	struct mem_fault_counts *counts;
	__u64 period = ctx->sample_period;
	long err;

	key.pid = bpf_get_current_pid_tgid() >> 32;
	/* A kernel thread's fault (no process to name): not a process' cost. */
	if (!key.pid)
		return;
	key.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(key.comm, sizeof(key.comm));
	if (fault_stacks) {
		long id = bpf_get_stackid(ctx, &mem_stacks, BPF_F_USER_STACK);

		if (id < 0)
			count(MEM_STAT_NO_STACK);
		else
			key.stack_id = (__s32)id;
	}
	counts = bpf_map_lookup_elem(&mem_faults, &key);
	if (!counts) {
		err = bpf_map_update_elem(&mem_faults, &key, &zero_faults, BPF_NOEXIST);
		if (err && err != -17) {
			count(MEM_STAT_FAULT_KEYS_FULL);
			return;
		}
		counts = bpf_map_lookup_elem(&mem_faults, &key);
		if (!counts)
			return;
	}
	if (kind < MEM_FAULT_KINDS)
		counts->faults[kind] += period ? period : 1;
}

SEC("perf_event")
int page_fault_minor(struct bpf_perf_event_data *ctx)
{
	count_faults(ctx, MEM_FAULT_MINOR);
	return 0;
}

SEC("perf_event")
int page_fault_major(struct bpf_perf_event_data *ctx)
{
	count_faults(ctx, MEM_FAULT_MAJOR);
	return 0;
}

/* ---- reclaim stalls (vmscan tracepoints) ---- */

struct reclaim_start {
	__u64 ns;
	__u32 kind;
	__u32 _pad;
};

/* Threads inside a reclaim, by thread id: when it began, which kind. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct reclaim_start);
} mem_reclaiming SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MEM_MAX_RECLAIM_KEYS);
	__type(key, struct mem_reclaim_key);
	__type(value, struct mem_reclaim_hist);
} mem_reclaim SEC(".maps");

static const struct mem_reclaim_hist zero_reclaim;

static __always_inline void reclaim_begin(__u32 kind)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct reclaim_start start = { .ns = bpf_ktime_get_ns(), .kind = kind };

	/* Keyed by thread, not CPU: a stalled task sleeps and may migrate. */
	bpf_map_update_elem(&mem_reclaiming, &tid, &start, BPF_ANY);
}

static __always_inline void reclaim_end(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct mem_reclaim_key key = {};
	struct mem_reclaim_hist *hist;
	struct reclaim_start *start;
	__u64 ns;
	__u32 slot;

	start = bpf_map_lookup_elem(&mem_reclaiming, &tid);
	if (!start) {
		count(MEM_STAT_RECLAIM_NO_BEGIN);
		return;
	}
	ns = bpf_ktime_get_ns() - start->ns;
	key.kind = start->kind;
	bpf_map_delete_elem(&mem_reclaiming, &tid);
	key.cgroup_id = bpf_get_current_cgroup_id();
	hist = bpf_map_lookup_elem(&mem_reclaim, &key);
	if (!hist) {
		long err = bpf_map_update_elem(&mem_reclaim, &key, &zero_reclaim, BPF_NOEXIST);

		if (err && err != -17) {
			count(MEM_STAT_RECLAIM_KEYS_FULL);
			return;
		}
		hist = bpf_map_lookup_elem(&mem_reclaim, &key);
		if (!hist)
			return;
	}
	slot = sonde_slot(ns, MEM_RECLAIM_MIN_SHIFT, MEM_RECLAIM_SLOTS);
	if (slot < MEM_RECLAIM_SLOTS)
		hist->slots[slot] += 1;
	hist->sum_ns += ns;
}

SEC("tracepoint/vmscan/mm_vmscan_direct_reclaim_begin")
int direct_reclaim_begin(void *ctx)
{
	reclaim_begin(MEM_RECLAIM_DIRECT);
	return 0;
}

SEC("tracepoint/vmscan/mm_vmscan_memcg_reclaim_begin")
int memcg_reclaim_begin(void *ctx)
{
	reclaim_begin(MEM_RECLAIM_MEMCG);
	return 0;
}

/* Both kinds end here (the begin remembered which). */
SEC("tracepoint/vmscan/mm_vmscan_direct_reclaim_end")
int reclaim_end_tp(void *ctx)
{
	reclaim_end();
	return 0;
}

/* ---- OOM kills (oom:mark_victim) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, MEM_OOM_RING_BYTES);
} mem_oom SEC(".maps");

/* The kernel types read, by CO-RE (only the fields used). */
struct kernfs_node___sonde {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup___sonde {
	struct kernfs_node___sonde *kn;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state___sonde {
	struct cgroup___sonde *cgroup;
} __attribute__((preserve_access_index));

struct css_set___sonde {
	struct cgroup_subsys_state___sonde *subsys[16];
	struct cgroup___sonde *dfl_cgrp;
} __attribute__((preserve_access_index));

struct page_counter___sonde {
	struct {
		long counter;
	} usage;
	unsigned long max;
} __attribute__((preserve_access_index));

/* `css` is mem_cgroup's first member: a memory css is its mem_cgroup. */
struct mem_cgroup___sonde {
	struct page_counter___sonde memory;
} __attribute__((preserve_access_index));

struct signal_struct___sonde {
	short oom_score_adj;
} __attribute__((preserve_access_index));

struct kuid___sonde {
	__u32 val;
};

struct cred___sonde {
	struct kuid___sonde uid;
} __attribute__((preserve_access_index));

struct task_struct___oom {
	int tgid;
	char comm[16];
	struct signal_struct___sonde *signal;
	const struct cred___sonde *cred;
	struct css_set___sonde *cgroups;
} __attribute__((preserve_access_index));

/* The field mark_victim gained with its task argument (kernel 6.9). */
struct trace_event_raw_mark_victim___task {
	unsigned long total_vm;
} __attribute__((preserve_access_index));

enum cgroup_subsys_id___sonde {
	memory_cgrp_id = 4,
};

/* The cgroups of `task`: its v2 cgroup and its memory cgroup's counter.
 * Not inlined: a function taking `struct mem_oom_event *` puts the struct
 * in the object's BTF, where the Rust mirror is checked against it. */
static __noinline void read_cgroups(struct mem_oom_event *e, struct task_struct___oom *task)
{
	int memory = bpf_core_enum_value(enum cgroup_subsys_id___sonde, memory_cgrp_id);
	struct css_set___sonde *cset = BPF_CORE_READ(task, cgroups);
	struct cgroup_subsys_state___sonde *css = NULL;
	struct mem_cgroup___sonde *memcg;

	e->cgroup_id = BPF_CORE_READ(cset, dfl_cgrp, kn, id);
	if (memory < 0 || memory >= 16)
		return;
	bpf_core_read(&css, sizeof(css), &cset->subsys[memory]);
	if (!css)
		return;
	memcg = (void *)css;
	e->memcg_id = BPF_CORE_READ(css, cgroup, kn, id);
	e->memcg_usage_pages = BPF_CORE_READ(memcg, memory.usage.counter);
	e->memcg_max_pages = BPF_CORE_READ(memcg, memory.max);
}

SEC("raw_tracepoint/mark_victim")
int oom_mark_victim(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct___oom *task;
	struct mem_oom_event *e;

	e = bpf_ringbuf_reserve(&mem_oom, sizeof(*e), 0);
	if (!e) {
		count(MEM_STAT_OOM_LOST);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->mono_ns = bpf_ktime_get_ns();
	if (bpf_core_field_exists(struct trace_event_raw_mark_victim___task, total_vm)) {
		task = (void *)ctx->args[0];
		e->from_victim = 1;
		e->pid = BPF_CORE_READ(task, tgid);
		e->uid = BPF_CORE_READ(task, cred, uid.val);
		e->oom_score_adj = BPF_CORE_READ(task, signal, oom_score_adj);
		BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	} else {
		/* Before 6.9 the tracepoint passes the victim's pid only: its
		 * name is read from /proc by user space, the cgroups are the
		 * OOM invoker's (the task whose charge failed). */
		task = (void *)bpf_get_current_task();
		e->pid = (__u32)ctx->args[0];
	}
	read_cgroups(e, task);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
