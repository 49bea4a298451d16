// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * runqueue: run-queue latency and context switches, counted in the kernel
 * per cgroup (and per process when asked).
 *
 *   sched_wakeup, sched_wakeup_new   the task (the tracepoint's argument,
 *                                    not `current`, which is the waker)
 *                                    becomes runnable: its wait starts
 *   sched_switch                     `prev` leaves the CPU: a context
 *                                    switch, voluntary (it blocked) or
 *                                    involuntary (preempted, still
 *                                    runnable: its wait starts again);
 *                                    `next` gets the CPU: its wait ends
 *                                    and lands in a log2 histogram
 *   sched_process_exit               a thread's pending wait is dropped
 *
 * Wait starts are kept in a hash by thread id, not per CPU: a woken task often
 * runs on another CPU than the one that woke it, and a preempted one may
 * migrate. The rules follow the kernel's own schedstat (`run_delay`,
 * kernel/sched/stats.h), so the sums agree with /proc/TID/schedstat: a
 * wakeup starts a wait only if none is pending (a preempted task that is
 * woken keeps its start), a task leaving the CPU while runnable starts
 * one, a task leaving it blocked has none. A switch is voluntary when the
 * task blocked (not preempted, state not runnable), as the kernel counts
 * nvcsw.
 *
 * Each program exists twice: tp_btf (5.5+, arguments typed by BTF) and
 * raw_tp (4.17+) for kernels whose BTF lacks the tracepoint's type; the
 * loader probes tp_btf as bcc's runqlat does and falls back. Task fields
 * are read with CO-RE either way.
 *
 * Minimum kernel 5.5 (BTF in sysfs, bpf_probe_read_kernel).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "runqueue.h"
#include "sched_task.h"
#include "sonde_slot.h"

char LICENSE[] SEC("license") = "GPL";

#define EEXIST 17

/* Set from user space before load; the verifier prunes what is off. */
const volatile __u8 filter_pids = 0;
const volatile __u8 filter_cgroups = 0;
const volatile __u8 per_process = 0;

/*
 * Every thread that waited, by thread id (deleted at exit); `since_ns` is
 * 0 when no wait is pending. Entries stay rather than come and go with
 * each wait: an in-place write costs far less than a hash insert and
 * delete (bucket lock, free list) on every wakeup and switch.
 */
#ifdef RQ_TASK_STORAGE
/* 5.11+ (runqueue_task.bpf.c): each thread's wait in its own task
 * storage, reached from the task pointer the tracepoint passes: no hash
 * lookup or update per switch, and nothing to delete at exit. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct rq_thread);
} rq_threads SEC(".maps");
#else
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RQ_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct rq_thread);
} rq_threads SEC(".maps");
#endif

/*
 * Per CPU: every CPU adds to its own copy of a cgroup's histogram, no
 * atomic and no cache line bouncing between CPUs switching tasks of the
 * same cgroup (232 B × CPUs per cgroup, preallocated).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, RQ_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct rq_hist);
} rq_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RQ_MAX_PROCESSES);
	__type(key, struct rq_process_key);
	__type(value, struct rq_process);
} rq_processes SEC(".maps");

/* Filter sets (user space fills them): process ids, cgroup ids. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RQ_MAX_FILTER);
	__type(key, __u32);
	__type(value, __u8);
} rq_pid_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RQ_MAX_FILTER);
	__type(key, __u64);
	__type(value, __u8);
} rq_cgroup_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RQ_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} rq_stats SEC(".maps");

static const struct rq_hist zero_hist;
static const struct rq_thread zero_thread;
static const struct rq_process zero_process;

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&rq_stats, &stat);

	if (value)
		*value += 1;
}

#ifdef RQ_TASK_STORAGE
/* The thread's entry (made when missing), or 0 (counted). */
static __always_inline struct rq_thread *task_thread_entry(struct task_struct___sonde *task)
{
	struct rq_thread *thread = bpf_task_storage_get(&rq_threads, (void *)task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (!thread)
		count(RQ_STAT_THREADS_FULL);
	return thread;
}
#define THREAD_LOOKUP(task, tid) ((struct rq_thread *)bpf_task_storage_get(&rq_threads, (void *)(task), 0, 0))
#define THREAD_ENTRY(task, tid) task_thread_entry(task)
#else
#define THREAD_LOOKUP(task, tid) ((struct rq_thread *)bpf_map_lookup_elem(&rq_threads, &(tid)))
#define THREAD_ENTRY(task, tid) thread_entry(tid)
#endif

#ifndef RQ_TASK_STORAGE
/* Thread `tid`'s entry, created if new (NULL, counted, when the map is full). */
static __always_inline struct rq_thread *thread_entry(__u32 tid)
{
	struct rq_thread *thread = bpf_map_lookup_elem(&rq_threads, &tid);
	long err;

	if (thread)
		return thread;
	err = bpf_map_update_elem(&rq_threads, &tid, &zero_thread, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		count(RQ_STAT_THREADS_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&rq_threads, &tid);
}
#endif

/* Whether a task of process `pid` in cgroup `cgroup` is watched. */
static __always_inline int wanted(__u32 pid, __u64 cgroup)
{
	if (filter_pids && !bpf_map_lookup_elem(&rq_pid_filter, &pid))
		return 0;
	if (filter_cgroups && !bpf_map_lookup_elem(&rq_cgroup_filter, &cgroup))
		return 0;
	return 1;
}

static __always_inline struct rq_hist *cgroup_hist(__u64 cgroup)
{
	struct rq_hist *hist = bpf_map_lookup_elem(&rq_cgroups, &cgroup);
	long err;

	if (hist)
		return hist;
	err = bpf_map_update_elem(&rq_cgroups, &cgroup, &zero_hist, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		count(RQ_STAT_CGROUPS_FULL);
		return 0;
	}
	return bpf_map_lookup_elem(&rq_cgroups, &cgroup);
}

/* The process' histogram; `task` names it when it is new (may be NULL: `current`). */
static __always_inline struct rq_hist *process_hist(__u64 cgroup, __u32 pid, struct task_struct___sonde *task)
{
	struct rq_process_key key = { .cgroup_id = cgroup, .pid = pid };
	struct rq_process *proc = bpf_map_lookup_elem(&rq_processes, &key);
	long err;

	if (proc)
		return &proc->hist;
	err = bpf_map_update_elem(&rq_processes, &key, &zero_process, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		count(RQ_STAT_PROCESSES_FULL);
		return 0;
	}
	proc = bpf_map_lookup_elem(&rq_processes, &key);
	if (!proc)
		return 0;
	if (!err) {
		if (task)
			BPF_CORE_READ_STR_INTO(&proc->comm, task, comm);
		else
			bpf_get_current_comm(proc->comm, sizeof(proc->comm));
	}
	return &proc->hist;
}

/* Whether a histogram is shared by CPUs. */
#define CGROUP_HIST 0
#define PROCESS_HIST 1

/* Adds to a histogram: atomically when it is `shared` by CPUs (processes). */
static __always_inline void add_wait(struct rq_hist *hist, __u64 ns, int shared)
{
	__u32 slot = sonde_slot(ns, RQ_LATENCY_MIN_SHIFT, RQ_SLOTS);

	if (slot >= RQ_SLOTS)
		return;
	if (shared) {
		__sync_fetch_and_add(&hist->slots[slot], 1);
		__sync_fetch_and_add(&hist->sum_ns, ns);
	} else {
		hist->slots[slot] += 1;
		hist->sum_ns += ns;
	}
}

static __always_inline void add_switch(struct rq_hist *hist, int voluntary, int shared)
{
	__u64 *counter = voluntary ? &hist->voluntary : &hist->involuntary;

	if (shared)
		__sync_fetch_and_add(counter, 1);
	else
		*counter += 1;
}

#define SCHED_FN(name) name##_btf
#define SCHED_READ(t, field) SCHED_BTF_READ(t, field)
#include "runqueue_handlers.h"
#undef SCHED_FN
#undef SCHED_READ

#ifndef RQ_TASK_STORAGE
#define SCHED_FN(name) name##_raw
#define SCHED_READ(t, field) BPF_CORE_READ(t, field)
#include "runqueue_handlers.h"
#undef SCHED_FN
#undef SCHED_READ
#endif

/* ---- tp_btf: arguments typed by the kernel's BTF (5.5+) ---- */

SEC("tp_btf/sched_wakeup")
int BPF_PROG(rq_wakeup_btf, struct task_struct___sonde *task)
{
	return on_wakeup_btf(task, 0);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(rq_wakeup_new_btf, struct task_struct___sonde *task)
{
	return on_wakeup_btf(task, 1);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rq_switch_btf, _Bool preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	return on_switch_btf(preempt, prev, next);
}

#ifndef RQ_TASK_STORAGE
/* ---- raw_tp: the same, where tp_btf does not load (4.17+) ---- */

SEC("raw_tp/sched_wakeup")
int BPF_PROG(rq_wakeup_raw, struct task_struct___sonde *task)
{
	return on_wakeup_raw(task, 0);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(rq_wakeup_new_raw, struct task_struct___sonde *task)
{
	return on_wakeup_raw(task, 1);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(rq_switch_raw, _Bool preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	return on_switch_raw(preempt, prev, next);
}

/* A thread exits: its entry goes (a reused id starts afresh). */
SEC("tracepoint/sched/sched_process_exit")
int rq_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&rq_threads, &tid);
	return 0;
}
#endif
