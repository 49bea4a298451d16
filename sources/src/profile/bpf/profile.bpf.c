// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * profile: CPU stack sampling. User space opens one perf event per online
 * CPU (software cpu-clock, or hardware cycles) and attaches this program to
 * each; every sample counts (process, thread, user stack, kernel stack) in
 * a hash map, the stacks themselves going to a stack-trace map.
 *
 * Two sets of maps (counts_N, stacks_N, spill_N) are switched by user
 * space through `profile_control`: while the program fills one set, user
 * space drains and clears the other, so no sample is lost to reading.
 *
 * The first sample of a process (not yet in `known_pids`) is announced on
 * the `new_pids` ring buffer, so user space can read the process' memory
 * maps while it lives, and still symbolize its stacks if it exits before
 * the interval ends; its PROFILE_UNWIND_AFTER_SAMPLES-th sample is
 * announced again, for its unwind tables. An exec replaces those maps: `profile_exec`
 * (tracepoint sched:sched_process_exec) forgets the process, so its next
 * sample announces it again.
 *
 * Stacks are walked by the kernel (bpf_get_stackid): kernel stacks always,
 * user stacks by frame pointers only; code built without them gives short
 * user stacks.
 *
 * CPython frames of the sampled thread are walked too (python.h) and
 * stored apart, their id in the key.
 *
 * Minimum kernel: 5.8 (BPF ring buffer); perf_event programs and stack maps
 * are older (4.9).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>

#include "profile.h"
#include "unwind_walk.h"
#include "python.h"

char LICENSE[] SEC("license") = "GPL";

/* errno values (the kernel's, which are the same on every architecture). */
#define EEXIST 17

/* Set from user space before load: record the idle task (pid 0) too. */
const volatile __u8 include_idle = 0;

struct counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PROFILE_MAX_COUNTS);
	__type(key, struct profile_key);
	__type(value, __u64);
};

struct stacks_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, PROFILE_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PROFILE_STACK_DEPTH * sizeof(__u64));
};

/* Preallocated (the default): perf_event programs may run in NMI context. */
struct counts_map counts_0 SEC(".maps");
struct counts_map counts_1 SEC(".maps");
struct stacks_map stacks_0 SEC(".maps");
struct stacks_map stacks_1 SEC(".maps");

struct spill_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, PROFILE_MAX_SPILL_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, PROFILE_STACK_DEPTH * sizeof(__u64));
};

/* Stacks refused by their set's stack map (see PROFILE_MAX_STACKS). */
struct spill_map spill_0 SEC(".maps");
struct spill_map spill_1 SEC(".maps");

/* Index 0: the set (0 or 1) the program writes to. Written by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} profile_control SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROFILE_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} profile_stats SEC(".maps");

/*
 * Processes already announced, with their samples so far (saturating at
 * PROFILE_UNWIND_AFTER_SAMPLES). LRU: an evicted one is announced again.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PROFILE_MAX_KNOWN_PIDS);
	__type(key, __u32);
	__type(value, __u8);
} known_pids SEC(".maps");

/* Pids (u32) of processes seen for the first time. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROFILE_NEW_PIDS_BYTES);
} new_pids SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&profile_stats, &stat);

	if (value)
		*value += 1;
}

/*
 * A stack id, or -errno with the loss counted. A stack whose bucket holds
 * another stack would be refused for the whole interval, so it goes to the
 * spill map: the kernel hashes stacks with a fixed seed, and the spill map
 * holds only the few stacks that collided, so their buckets there are
 * mostly free.
 */
static __always_inline __s32 stack_id(struct bpf_perf_event_data *ctx, void *stacks, void *spill, __u64 flags,
				      __u32 collision)
{
	long id = bpf_get_stackid(ctx, stacks, flags);

	if (id == -EEXIST) {
		id = bpf_get_stackid(ctx, spill, flags);
		if (id >= 0) {
			count(PROFILE_STAT_SPILLED);
			return (__s32)(id | PROFILE_SPILL_BIT);
		}
		if (id == -EEXIST)
			count(collision);
	}
	if (id == -12 /* ENOMEM */)
		count(PROFILE_STAT_STACK_MAP_FULL);
	return (__s32)id;
}

/* Counts `key`; its user stack is walked by the kernel unless `user_done` (unwound here). */
static __always_inline void record(struct bpf_perf_event_data *ctx, struct profile_key *key, void *counts,
				   void *stacks, void *spill, int user_done)
{
	__u64 one = 1, *value;
	long err;

	if (!user_done)
		key->user_stack_id = stack_id(ctx, stacks, spill, BPF_F_USER_STACK, PROFILE_STAT_USER_COLLISION);
	key->kernel_stack_id = stack_id(ctx, stacks, spill, 0, PROFILE_STAT_KERNEL_COLLISION);

	value = bpf_map_lookup_elem(counts, key);
	if (value) {
		__sync_fetch_and_add(value, 1);
		return;
	}
	err = bpf_map_update_elem(counts, key, &one, BPF_NOEXIST);
	if (err == -EEXIST) {
		/* Another CPU inserted the same key meanwhile. */
		value = bpf_map_lookup_elem(counts, key);
		if (value)
			__sync_fetch_and_add(value, 1);
	} else if (err) {
		count(PROFILE_STAT_COUNTS_FULL);
	}
}

static __always_inline void notify(__u32 value)
{
	if (bpf_ringbuf_output(&new_pids, &value, sizeof(value), 0))
		count(PROFILE_STAT_NOTIFY_LOST);
}

/*
 * A process' first sample announces it (user space reads its maps); the
 * one that makes PROFILE_UNWIND_AFTER_SAMPLES announces it again, flagged
 * (user space loads its unwind tables). The count is racy across CPUs: a
 * lost increment delays the second announcement by a sample, and a
 * repeated one is harmless (user space notes the process again).
 */
static __always_inline void announce(__u32 pid)
{
	__u8 seen = 1, *samples = bpf_map_lookup_elem(&known_pids, &pid);

	if (samples) {
		if (*samples < PROFILE_UNWIND_AFTER_SAMPLES) {
			*samples += 1;
			if (*samples == PROFILE_UNWIND_AFTER_SAMPLES)
				notify(pid | PROFILE_ANNOUNCE_UNWIND);
		}
		return;
	}
	bpf_map_update_elem(&known_pids, &pid, &seen, BPF_ANY);
	notify(pid);
}

SEC("perf_event")
int profile_cpu(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct profile_key key = {
		.pid = id >> 32,
		.tid = (__u32)id,
	};
	__u32 zero = 0, *set, active;
	struct unwind_state *state;
	__u64 python_id;

	count(PROFILE_STAT_SAMPLES);
	if (key.tid == 0 && !include_idle) {
		count(PROFILE_STAT_IDLE);
		return 0;
	}
	bpf_get_current_comm(&key.comm, sizeof(key.comm));
	if (key.pid != 0)
		announce(key.pid);

	/*
	 * The set is read once: every part of this sample (its Python stack,
	 * unwound stack and count) goes to the same set, even when user space
	 * switches sets while the walker's tail calls run (user space waits
	 * SWITCH_GRACE before it reads the set it left).
	 */
	set = bpf_map_lookup_elem(&profile_control, &zero);
	active = set && *set == 1 ? 1 : 0;

	/* The Python frames first: the native walk below may end in a tail call. */
	python_id = key.pid ? python_walk(key.pid, key.tid) : PYTHON_STACK_NONE;
	/* Separate calls per set: each helper call sees one constant map. */
	if (active)
		key.python_stack_id = python_store(python_id, &pystacks_1);
	else
		key.python_stack_id = python_store(python_id, &pystacks_0);

	/* Processes with tables: walk the user stack here (profile_unwind). */
	state = bpf_map_lookup_elem(&unwind_state, &zero);
	if (unwind_enabled && key.pid != 0 && state && bpf_map_lookup_elem(&unwind_pids, &key.pid)) {
		if (unwind_user_regs(ctx, state)) {
			state->key = key;
			state->set = active;
			state->start_pc = state->pc;
			state->start_sp = state->sp;
			state->start_bp = state->bp;
			state->pc_is_return = 0;
			state->runs = 0;
			state->stack.len = 0;
			bpf_tail_call(ctx, &unwind_progs, 0);
			count(PROFILE_STAT_TAIL_CALL_FAILED);
		} else {
			key.unwind_outcome = UNWIND_OUTCOME_NO_USER_STACK;
		}
	}

	if (active)
		record(ctx, &key, &counts_1, &stacks_1, &spill_1, 0);
	else
		record(ctx, &key, &counts_0, &stacks_0, &spill_0, 0);
	return 0;
}

/* Stores the unwound stack in the set's map and counts the sample. */
static __always_inline void unwind_finish(struct bpf_perf_event_data *ctx, struct unwind_state *state, __u32 outcome)
{
	struct profile_key *key = &state->key;
	__u32 zero = 0, *set = bpf_map_lookup_elem(&profile_control, &zero);
	/* The set the sample started in (profile_cpu), where its Python stack is. */
	__u32 active = state->set;
	void *unwound = active ? (void *)&unwound_1 : (void *)&unwound_0;
	long err;

	if (set && *set != active)
		count(PROFILE_STAT_SET_SWITCHED);

	unwind_capture(state, outcome);
	key->unwind_outcome = outcome;
	key->user_stack_hash = unwind_hash(&state->stack);
	key->user_stack_id = -UNWIND_STACK_ID;
	err = bpf_map_update_elem(unwound, &key->user_stack_hash, &state->stack, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		count(PROFILE_STAT_UNWOUND_FULL);
		key->user_stack_hash = 0;
		key->user_stack_id = -12 /* ENOMEM */;
	}
	if (active)
		record(ctx, key, &counts_1, &stacks_1, &spill_1, 1);
	else
		record(ctx, key, &counts_0, &stacks_0, &spill_0, 1);
}

/*
 * Walks UNWIND_FRAMES_PER_RUN frames of the user stack in this CPU's
 * unwind_state, then tail-calls itself; counts the sample when the stack
 * ends (or after UNWIND_MAX_RUNS runs).
 */
SEC("perf_event")
int profile_unwind(struct bpf_perf_event_data *ctx)
{
	__u32 zero = 0, i, outcome = UNWIND_OUTCOME_NO_MAPPING;
	struct unwind_state *state = bpf_map_lookup_elem(&unwind_state, &zero);
	struct unwind_mappings *mappings;

	if (!state)
		return 0;
	mappings = bpf_map_lookup_elem(&unwind_pids, &state->key.pid);
	if (mappings) {
		for (i = 0; i < UNWIND_FRAMES_PER_RUN; i++) {
			outcome = unwind_step(state, mappings);
			if (outcome != UNWIND_CONTINUE)
				break;
		}
	}
	if (outcome == UNWIND_CONTINUE) {
		state->runs += 1;
		if (state->runs < UNWIND_MAX_RUNS)
			bpf_tail_call(ctx, &unwind_progs, 0);
		outcome = UNWIND_OUTCOME_DEPTH_LIMIT;
	}
	unwind_finish(ctx, state, outcome);
	return 0;
}

/* A new program in this process: announce it again at its next sample. */
SEC("tracepoint/sched/sched_process_exec")
int profile_exec(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	bpf_map_delete_elem(&known_pids, &pid);
	/* Its mappings are the old program's: frame pointers until it is noted again. */
	bpf_map_delete_elem(&unwind_pids, &pid);
	/* Its Python state (if any) is gone with the old program. */
	bpf_map_delete_elem(&python_procs, &pid);
	return 0;
}
