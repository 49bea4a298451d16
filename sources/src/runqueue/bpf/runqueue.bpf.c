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
 * Waits are kept in a hash by thread id, not per CPU: a woken task often
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

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RQ_MAX_WAITING);
	__type(key, __u32);
	__type(value, struct rq_waiting);
} rq_waiting SEC(".maps");

/* Not per-CPU: a histogram per cgroup per CPU would cost 240 B × CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
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
static const struct rq_process zero_process;

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&rq_stats, &stat);

	if (value)
		*value += 1;
}

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

static __always_inline void add_wait(struct rq_hist *hist, __u64 ns)
{
	__u32 slot = sonde_slot(ns, RQ_LATENCY_MIN_SHIFT, RQ_SLOTS);

	if (slot < RQ_SLOTS)
		__sync_fetch_and_add(&hist->slots[slot], 1);
	__sync_fetch_and_add(&hist->sum_ns, ns);
}

static __always_inline void add_switch(struct rq_hist *hist, int voluntary)
{
	if (voluntary)
		__sync_fetch_and_add(&hist->voluntary, 1);
	else
		__sync_fetch_and_add(&hist->involuntary, 1);
}

/* `task` became runnable (woken): its wait starts, unless one is pending. */
static __always_inline int on_wakeup(struct task_struct___sonde *task, __u64 flags)
{
	struct rq_waiting waiting = {};
	__u32 tid = BPF_CORE_READ(task, pid);
	long err;

	if (!tid)
		return 0;
	waiting.pid = BPF_CORE_READ(task, tgid);
	waiting.cgroup_id = sched_task_cgroup(task);
	if (!wanted(waiting.pid, waiting.cgroup_id))
		return 0;
	waiting.since_ns = bpf_ktime_get_ns();
	err = bpf_map_update_elem(&rq_waiting, &tid, &waiting, flags);
	if (err && err != -EEXIST)
		count(RQ_STAT_WAITING_FULL);
	return 0;
}

static __always_inline int on_switch(int preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tid = BPF_CORE_READ(prev, pid);
	struct rq_waiting *waiting;
	struct rq_hist *hist;

	if (tid) {
		/* `prev` is still `current` here: the helpers read it cheaply. */
		__u32 state = sched_task_state(prev);
		__u32 pid = bpf_get_current_pid_tgid() >> 32;
		__u64 cgroup = bpf_get_current_cgroup_id();

		if (state) {
			/* Blocked: no wait pending (drop one a spurious wakeup left). */
			bpf_map_delete_elem(&rq_waiting, &tid);
		}
		if (wanted(pid, cgroup)) {
			int voluntary = !preempt && state;

			hist = cgroup_hist(cgroup);
			if (hist)
				add_switch(hist, voluntary);
			if (per_process) {
				hist = process_hist(cgroup, pid, 0);
				if (hist)
					add_switch(hist, voluntary);
			}
			if (!state) {
				struct rq_waiting again = { .since_ns = now, .cgroup_id = cgroup, .pid = pid };

				if (bpf_map_update_elem(&rq_waiting, &tid, &again, BPF_ANY))
					count(RQ_STAT_WAITING_FULL);
			}
		}
	}

	tid = BPF_CORE_READ(next, pid);
	if (!tid)
		return 0;
	waiting = bpf_map_lookup_elem(&rq_waiting, &tid);
	if (!waiting)
		return 0;
	{
		struct rq_waiting seen = *waiting;
		__u64 ns = now > seen.since_ns ? now - seen.since_ns : 0;

		bpf_map_delete_elem(&rq_waiting, &tid);
		hist = cgroup_hist(seen.cgroup_id);
		if (hist)
			add_wait(hist, ns);
		if (per_process) {
			hist = process_hist(seen.cgroup_id, seen.pid, next);
			if (hist)
				add_wait(hist, ns);
		}
	}
	return 0;
}

/* ---- tp_btf: arguments typed by the kernel's BTF (5.5+) ---- */

SEC("tp_btf/sched_wakeup")
int BPF_PROG(rq_wakeup_btf, struct task_struct___sonde *task)
{
	return on_wakeup(task, BPF_NOEXIST);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(rq_wakeup_new_btf, struct task_struct___sonde *task)
{
	return on_wakeup(task, BPF_ANY);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rq_switch_btf, _Bool preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	return on_switch(preempt, prev, next);
}

/* ---- raw_tp: the same, where tp_btf does not load (4.17+) ---- */

SEC("raw_tp/sched_wakeup")
int BPF_PROG(rq_wakeup_raw, struct task_struct___sonde *task)
{
	return on_wakeup(task, BPF_NOEXIST);
}

SEC("raw_tp/sched_wakeup_new")
int BPF_PROG(rq_wakeup_new_raw, struct task_struct___sonde *task)
{
	return on_wakeup(task, BPF_ANY);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(rq_switch_raw, _Bool preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	return on_switch(preempt, prev, next);
}

/* A thread exits: a wait it left pending would never end. */
SEC("tracepoint/sched/sched_process_exit")
int rq_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&rq_waiting, &tid);
	return 0;
}
