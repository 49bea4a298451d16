// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * offcpu: time off CPU by process, stack and task state, sampled at
 * switch-out and aggregated in the kernel.
 *
 *   sched_switch, `prev` leaving   every `sample_every`-th switch-out of a
 *                                  thread (one at a random position in each
 *                                  run of that many) is sampled: its user
 *                                  and kernel stacks go to a stack map
 *                                  (`current` is still `prev` here), the
 *                                  time, state and stack ids to its entry
 *   sched_switch, `next` arriving  a sampled thread is back: the time it
 *                                  was off CPU is added to (process, state,
 *                                  stacks) in the active counts map
 *   sched_process_exit             the thread's entry goes
 *
 * Per-thread state lives in a hash by thread id, not per CPU: a thread
 * usually comes back on another CPU than the one it left (OpenTelemetry's
 * per-CPU design pairs the wrong events when tasks migrate, issue #1348).
 * Sampling one switch-out in each run of N per thread (stratified) gives
 * every switch-out the probability 1/N, as independent coin flips would,
 * with far less variance per thread: 200 sleeps at N = 10 give 20 samples,
 * not 20 ± 4.
 *
 * Two counts maps (user space switches between them every interval and
 * drains the idle one) and two stack maps, one per epoch: user space
 * resets the idle stack map and starts a new epoch when the active one
 * fills. A thread that left the CPU in an older epoch comes back with
 * stacks that may be gone: its time is counted, its stacks marked expired
 * (OFFCPU_STAT_STACK_EXPIRED).
 *
 * Both tp_btf (5.5+) and raw_tp programs exist; the loader picks as for
 * runqueue. Minimum kernel 5.5 (BTF).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "offcpu.h"
/* The task_struct views runqueue reads too: one definition for both. */
#include "../../runqueue/bpf/sched_task.h"

char LICENSE[] SEC("license") = "GPL";

#define EEXIST 17
#define ENOMEM 12

/* Set from user space before load. */
/* Sample one switch-out in each run of this many per thread; 0: none. */
const volatile __u32 sample_every = 1;
/* Samples off CPU for less than this are dropped. */
const volatile __u64 min_block_ns = 0;

/* A thread's sampling state and its pending sample. */
struct offcpu_thread {
	/* When it left the CPU, if that switch-out was sampled; else 0. */
	__u64 since_ns;
	__s32 user_stack_id;
	__s32 kernel_stack_id;
	__u32 epoch;
	__u32 state;
	__u32 pid;
	/* Position in the current run of `sample_every`, and the one sampled. */
	__u32 pos;
	__u32 pick;
	__u32 _pad;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFCPU_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct offcpu_thread);
} offcpu_threads SEC(".maps");

struct counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OFFCPU_MAX_COUNTS);
	__type(key, struct offcpu_key);
	__type(value, struct offcpu_value);
};

struct stacks_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, OFFCPU_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, OFFCPU_STACK_DEPTH * sizeof(__u64));
};

struct counts_map offcpu_counts_0 SEC(".maps");
struct counts_map offcpu_counts_1 SEC(".maps");
struct stacks_map offcpu_stacks_0 SEC(".maps");
struct stacks_map offcpu_stacks_1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct offcpu_control);
} offcpu_control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OFFCPU_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} offcpu_stats SEC(".maps");

static const struct offcpu_thread zero_thread;

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&offcpu_stats, &stat);

	if (value)
		*value += 1;
}

/* The task state as the samples are labelled (TASK_* of include/linux/sched.h). */
static __always_inline __u32 label(__u32 state)
{
	if (state == 0)
		return OFFCPU_STATE_RUNNABLE;
	/* TASK_IDLE: uninterruptible, not counted in the load (0x400). */
	if ((state & 0x402) == 0x402)
		return OFFCPU_STATE_IDLE;
	if (state & 2)
		return OFFCPU_STATE_UNINTERRUPTIBLE;
	if (state & 1)
		return OFFCPU_STATE_SLEEPING;
	/* __TASK_STOPPED, __TASK_TRACED. */
	if (state & 0xc)
		return OFFCPU_STATE_STOPPED;
	return OFFCPU_STATE_OTHER;
}

/* A stack id, or -errno with the loss counted. */
static __always_inline __s32 stack_id(void *ctx, void *stacks, __u64 flags, __u32 collision)
{
	long id = bpf_get_stackid(ctx, stacks, flags);

	if (id == -EEXIST)
		count(collision);
	else if (id == -ENOMEM)
		count(OFFCPU_STAT_STACK_MAP_FULL);
	return (__s32)id;
}

static __always_inline void add(void *counts, struct offcpu_key *key, __u64 ns)
{
	struct offcpu_value one = { .total_ns = ns, .count = 1 }, *value;
	long err;

	value = bpf_map_lookup_elem(counts, key);
	if (value) {
		__sync_fetch_and_add(&value->total_ns, ns);
		__sync_fetch_and_add(&value->count, 1);
		return;
	}
	err = bpf_map_update_elem(counts, key, &one, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Another CPU inserted the same key meanwhile. */
		value = bpf_map_lookup_elem(counts, key);
		if (value) {
			__sync_fetch_and_add(&value->total_ns, ns);
			__sync_fetch_and_add(&value->count, 1);
		}
	} else if (err) {
		count(OFFCPU_STAT_COUNTS_FULL);
	}
}

/* `prev` (still `current`) leaves the CPU: sample it, or not. */
static __always_inline void switch_out(void *ctx, __u32 task_state, __u32 tid, __u64 now)
{
	struct offcpu_thread *thread = bpf_map_lookup_elem(&offcpu_threads, &tid);
	struct offcpu_control *control;
	__u32 zero = 0;

	if (!thread) {
		long err = bpf_map_update_elem(&offcpu_threads, &tid, &zero_thread, BPF_NOEXIST);

		if (err && err != -EEXIST) {
			count(OFFCPU_STAT_THREADS_FULL);
			return;
		}
		thread = bpf_map_lookup_elem(&offcpu_threads, &tid);
		if (!thread) {
			count(OFFCPU_STAT_THREADS_FULL);
			return;
		}
	}
	if (sample_every > 1) {
		__u32 pos = thread->pos;

		if (pos == 0)
			thread->pick = bpf_get_prandom_u32() % sample_every;
		thread->pos = pos + 1 >= sample_every ? 0 : pos + 1;
		if (pos != thread->pick) {
			thread->since_ns = 0;
			return;
		}
	}
	control = bpf_map_lookup_elem(&offcpu_control, &zero);
	if (!control)
		return;
	thread->epoch = control->epoch;
	if (thread->epoch & 1) {
		thread->user_stack_id = stack_id(ctx, &offcpu_stacks_1, BPF_F_USER_STACK, OFFCPU_STAT_USER_COLLISION);
		thread->kernel_stack_id = stack_id(ctx, &offcpu_stacks_1, 0, OFFCPU_STAT_KERNEL_COLLISION);
	} else {
		thread->user_stack_id = stack_id(ctx, &offcpu_stacks_0, BPF_F_USER_STACK, OFFCPU_STAT_USER_COLLISION);
		thread->kernel_stack_id = stack_id(ctx, &offcpu_stacks_0, 0, OFFCPU_STAT_KERNEL_COLLISION);
	}
	thread->state = label(task_state);
	thread->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(thread->comm, sizeof(thread->comm));
	thread->since_ns = now;
	count(OFFCPU_STAT_SAMPLED);
}

/* Thread `tid` gets the CPU back: its pending sample, if any, is counted. */
static __always_inline void switch_in(__u32 tid, __u64 now)
{
	struct offcpu_thread *thread = bpf_map_lookup_elem(&offcpu_threads, &tid);
	struct offcpu_control *control;
	struct offcpu_key key = {};
	__u32 zero = 0;
	__u64 ns;

	if (!thread || !thread->since_ns)
		return;
	ns = now > thread->since_ns ? now - thread->since_ns : 0;
	thread->since_ns = 0;
	if (ns < min_block_ns) {
		count(OFFCPU_STAT_SHORT);
		return;
	}
	control = bpf_map_lookup_elem(&offcpu_control, &zero);
	if (!control)
		return;
	key.pid = thread->pid;
	key.state = thread->state;
	key.stack_set = thread->epoch & 1;
	if (thread->epoch == control->epoch) {
		key.user_stack_id = thread->user_stack_id;
		key.kernel_stack_id = thread->kernel_stack_id;
	} else {
		key.user_stack_id = -OFFCPU_STACK_EXPIRED;
		key.kernel_stack_id = -OFFCPU_STACK_EXPIRED;
		count(OFFCPU_STAT_STACK_EXPIRED);
	}
	__builtin_memcpy(key.comm, thread->comm, sizeof(key.comm));
	/* Separate calls per set: each helper call sees one constant map. */
	if (control->counts_set == 1)
		add(&offcpu_counts_1, &key, ns);
	else
		add(&offcpu_counts_0, &key, ns);
}

/*
 * Twice: plain loads of the BTF-typed tp_btf arguments (one instruction a
 * field), probe reads of the raw_tp ones (a helper call a field).
 */
#define ON_SWITCH(flavor, read)                                                        \
	static __always_inline int on_switch_##flavor(void *ctx, struct task_struct___sonde *prev, \
						      struct task_struct___sonde *next)         \
	{                                                                              \
		__u64 now = bpf_ktime_get_ns();                                        \
		__u32 tid;                                                             \
                                                                                       \
		if (sample_every) {                                                    \
			tid = read(prev, pid);                                         \
			if (tid)                                                       \
				switch_out(ctx, sched_task_state_##flavor(prev), tid, now); \
		}                                                                      \
		tid = read(next, pid);                                                 \
		if (tid)                                                               \
			switch_in(tid, now);                                           \
		return 0;                                                              \
	}

ON_SWITCH(btf, SCHED_BTF_READ)
ON_SWITCH(raw, BPF_CORE_READ)

SEC("tp_btf/sched_switch")
int BPF_PROG(offcpu_switch_btf, _Bool preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	return on_switch_btf(ctx, prev, next);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(offcpu_switch_raw, _Bool preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	return on_switch_raw(ctx, prev, next);
}

/* A thread exits: its state goes (it is running: no sample is pending). */
SEC("tracepoint/sched/sched_process_exit")
int offcpu_exit(void *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&offcpu_threads, &tid);
	return 0;
}
