/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * profile: walking user stacks with the tables of unwind.h, in BPF, x86-64.
 *
 * The sampling program reads the user registers (from the perf event's
 * registers in user mode; from the task's saved user registers in kernel
 * mode), stores them in a per-CPU state and tail-calls profile_unwind,
 * which walks UNWIND_FRAMES_PER_RUN frames and tail-calls itself until the
 * stack ends or UNWIND_MAX_RUNS runs are done: no bpf_loop (5.17), so it
 * loads on 5.10. Every loop is bounded (kernel 5.3+).
 *
 * Per frame: the process' mapping holding the PC (binary search in its
 * sorted mapping array), then the row (binary search in the file's rows),
 * then CFA, return address and RBP. Code without a table (anonymous JIT
 * memory, files without .eh_frame, Go built without it) is walked by frame
 * pointers instead.
 */
#ifndef SONDE_PROFILE_UNWIND_WALK_H
#define SONDE_PROFILE_UNWIND_WALK_H

#include <bpf/bpf_core_read.h>

#include "unwind.h"

/* Set by user space: walk user stacks here (x86-64 with tables loaded). */
const volatile __u8 unwind_enabled = 0;
/* Set by user space: the kernel has bpf_task_pt_regs (5.15+). */
const volatile __u8 have_task_pt_regs = 0;
/* Set by user space: THREAD_SIZE - sizeof(struct pt_regs), for older kernels. */
const volatile __u64 task_regs_offset = 16384 - 168;
/* Set by user space (tests): capture one sample in this many for the oracle; 0: none. */
const volatile __u32 oracle_every = 0;

/* Oracle records (struct unwind_oracle); sized by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, UNWIND_ORACLE_BYTES);
} unwind_oracle SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UNWIND_MAX_PIDS);
	__type(key, __u32);
	__type(value, struct unwind_mappings);
} unwind_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_MAX_FILES);
	__type(key, __u32);
	__type(value, struct unwind_file);
} unwind_files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UNWIND_DEFAULT_ROWS);
	__type(key, __u32);
	__type(value, struct unwind_row);
} unwind_rows SEC(".maps");

/* The walk in progress on this CPU, carried across tail calls. */
struct unwind_state {
	__u64 pc;
	__u64 sp;
	__u64 bp;
	/* The PC is a return address (look up pc - 1: the call may end its function). */
	__u32 pc_is_return;
	__u32 runs;
	/* The map set the sample started in (0 or 1). */
	__u32 set;
	__u32 pad;
	struct profile_key key;
	struct unwind_stack stack;
	/* The sampled registers, for the oracle. */
	__u64 start_pc;
	__u64 start_sp;
	__u64 start_bp;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_state);
} unwind_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} unwind_progs SEC(".maps");

struct unwound_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UNWIND_MAX_STACKS);
	__type(key, __u64);
	__type(value, struct unwind_stack);
};

struct unwound_map unwound_0 SEC(".maps");
struct unwound_map unwound_1 SEC(".maps");

/* The walker's verdict on one frame: go on, or why the stack ends. */
#define UNWIND_CONTINUE 255

struct task_struct___unwind {
	void *stack;
	void *mm;
} __attribute__((preserve_access_index));

#if defined(__TARGET_ARCH_x86)

/*
 * The user registers of the current task into `state`; false when it has
 * none (a kernel thread).
 */
static __always_inline int unwind_user_regs(struct bpf_perf_event_data *ctx, struct unwind_state *state)
{
	struct pt_regs regs;

	/*
	 * Volatile loads, one per field at a constant offset: the verifier
	 * refuses a context access through a computed pointer, which clang
	 * makes when both branches below load the same fields.
	 */
	if (*(volatile __u64 *)&ctx->regs.cs & 3) {
		state->pc = *(volatile __u64 *)&ctx->regs.rip;
		state->sp = *(volatile __u64 *)&ctx->regs.rsp;
		state->bp = *(volatile __u64 *)&ctx->regs.rbp;
		return 1;
	}
	/* In the kernel: the registers saved at its entry, at the stack's top. */
	struct task_struct___unwind *task = (void *)bpf_get_current_task();

	if (!BPF_CORE_READ(task, mm))
		return 0;
	if (have_task_pt_regs) {
		void *saved = (void *)bpf_task_pt_regs(bpf_get_current_task_btf());

		if (bpf_probe_read_kernel(&regs, sizeof(regs), saved))
			return 0;
	} else {
		void *stack = BPF_CORE_READ(task, stack);

		if (!stack || bpf_probe_read_kernel(&regs, sizeof(regs), stack + task_regs_offset))
			return 0;
	}
	if (!(regs.cs & 3))
		return 0;
	state->pc = regs.rip;
	state->sp = regs.rsp;
	state->bp = regs.rbp;
	return 1;
}

/*
 * The two searches are global functions: the verifier checks each once,
 * on its own, with unknown arguments. Inlined in the frame loop, every
 * path through every search step would be checked again for every frame
 * (the mapping index is a precise offset), past the verifier's budget.
 */

/* Index of the mapping of process `pid` holding `pc`, or -1. */
__attribute__((noinline)) int unwind_mapping_index(__u32 pid, __u64 pc)
{
	struct unwind_mappings *m = bpf_map_lookup_elem(&unwind_pids, &pid);
	__u32 lo = 0, hi, i;

	if (!m)
		return -1;
	hi = m->count;
	if (hi > UNWIND_MAX_MAPPINGS)
		hi = UNWIND_MAX_MAPPINGS;
	/* The last mapping starting at or before pc: lo ends one past it. */
	for (i = 0; i < UNWIND_MAPPING_STEPS; i++) {
		if (lo >= hi)
			break;
		__u32 mid = (lo + hi) / 2;

		if (m->mappings[mid & (UNWIND_MAX_MAPPINGS - 1)].start <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	lo = (lo - 1) & (UNWIND_MAX_MAPPINGS - 1);
	return pc < m->mappings[lo].end ? (int)lo : -1;
}

/* Index in unwind_rows of the row of rows [first, first + count) covering ELF address `pc`, or -1. */
__attribute__((noinline)) long unwind_row_index(__u32 first, __u32 count, __u64 pc)
{
	__u32 lo = first, hi = first + count, i;
	struct unwind_row *row;

	if (count == 0 || count > UNWIND_MAX_FILE_ROWS || pc > 0xffffffffULL)
		return -1;
	for (i = 0; i < UNWIND_ROW_STEPS; i++) {
		if (lo >= hi)
			break;
		__u32 mid = lo + (hi - lo) / 2;

		row = bpf_map_lookup_elem(&unwind_rows, &mid);
		if (!row)
			return -1;
		if (row->pc <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == first)
		return -1;
	return lo - 1;
}

/* One step by frame pointers: RBP points at the saved RBP, the return address above it. */
static __always_inline __u32 unwind_fp_step(struct unwind_state *state)
{
	__u64 frame[2];

	if (state->bp == 0)
		return UNWIND_OUTCOME_FP_END;
	if (state->bp < state->sp)
		return UNWIND_OUTCOME_BAD_FRAME;
	if (bpf_probe_read_user(frame, sizeof(frame), (void *)state->bp))
		return UNWIND_OUTCOME_READ_FAULT;
	if (frame[1] == 0)
		return UNWIND_OUTCOME_FP_END;
	state->sp = state->bp + 16;
	state->bp = frame[0];
	state->pc = frame[1];
	state->pc_is_return = 1;
	return UNWIND_CONTINUE;
}

/*
 * The ucontext a signal handler returns through: at __restore_rt, RSP
 * points at the ucontext, whose uc_mcontext (at 40) holds the interrupted
 * registers: RBP at gregs[10], RSP at gregs[15], RIP at gregs[16].
 */
static __always_inline __u32 unwind_signal_step(struct unwind_state *state)
{
	__u64 regs[7];

	/* gregs[10..16]: rbp rbx rdx rax rcx rsp rip. */
	if (bpf_probe_read_user(regs, sizeof(regs), (void *)(state->sp + 40 + 10 * 8)))
		return UNWIND_OUTCOME_READ_FAULT;
	state->bp = regs[0];
	state->sp = regs[5];
	state->pc = regs[6];
	/* The interrupted instruction itself, not a return address. */
	state->pc_is_return = 0;
	return state->pc ? UNWIND_CONTINUE : UNWIND_OUTCOME_BAD_FRAME;
}

/* Records the current PC as a frame, then finds the caller's registers. */
static __always_inline __u32 unwind_step(struct unwind_state *state, struct unwind_mappings *mappings)
{
	__u32 len = state->stack.len;
	__u64 pc = state->pc, cfa, ra;

	if (len >= UNWIND_MAX_FRAMES)
		return UNWIND_OUTCOME_DEPTH_LIMIT;
	state->stack.ips[len & (UNWIND_MAX_FRAMES - 1)] = pc;
	state->stack.len = len + 1;

	int index = unwind_mapping_index(state->key.pid, pc);

	if (index < 0)
		return UNWIND_OUTCOME_NO_MAPPING;
	struct unwind_mapping *mapping = &mappings->mappings[index & (UNWIND_MAX_MAPPINGS - 1)];

	if (mapping->file == 0)
		return unwind_fp_step(state);
	__u32 file_id = mapping->file;
	struct unwind_file *file = bpf_map_lookup_elem(&unwind_files, &file_id);

	if (!file || file->count == 0)
		return UNWIND_OUTCOME_NO_UNWIND_INFO;
	long row_index = unwind_row_index(file->first, file->count, pc - state->pc_is_return - mapping->bias);

	if (row_index < 0)
		return UNWIND_OUTCOME_NO_UNWIND_INFO;
	__u32 row_key = (__u32)row_index;
	struct unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &row_key);

	if (!row)
		return UNWIND_OUTCOME_NO_UNWIND_INFO;
	switch (row->kind) {
	case UNWIND_ROW_CFA_RSP:
		cfa = state->sp + row->cfa_offset;
		break;
	case UNWIND_ROW_CFA_RBP:
		cfa = state->bp + row->cfa_offset;
		break;
	case UNWIND_ROW_PLT:
		cfa = state->sp + 8 + ((pc & 15) >= (__u64)row->cfa_offset ? 8 : 0);
		break;
	case UNWIND_ROW_SIGNAL:
		return unwind_signal_step(state);
	case UNWIND_ROW_END:
		return UNWIND_OUTCOME_COMPLETE;
	case UNWIND_ROW_NONE: {
		/* Hand-written code without CFI: its frame pointer, if it keeps one. */
		__u32 outcome = unwind_fp_step(state);

		return outcome == UNWIND_CONTINUE ? outcome : UNWIND_OUTCOME_NO_UNWIND_INFO;
	}
	default:
		return UNWIND_OUTCOME_UNSUPPORTED;
	}
	if (cfa <= state->sp && row->kind != UNWIND_ROW_CFA_RBP)
		return UNWIND_OUTCOME_BAD_FRAME;
	if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)))
		return UNWIND_OUTCOME_READ_FAULT;
	if (row->rbp_slot) {
		__u64 bp;

		if (bpf_probe_read_user(&bp, sizeof(bp), (void *)(cfa + (__s64)row->rbp_slot * 8)))
			return UNWIND_OUTCOME_READ_FAULT;
		state->bp = bp;
	}
	if (ra == 0)
		return UNWIND_OUTCOME_BAD_FRAME;
	state->sp = cfa;
	state->pc = ra;
	state->pc_is_return = 1;
	return UNWIND_CONTINUE;
}

#else /* not x86-64: user stacks stay with the kernel's frame-pointer walk */

static __always_inline int unwind_user_regs(struct bpf_perf_event_data *ctx, struct unwind_state *state)
{
	return 0;
}

static __always_inline __u32 unwind_step(struct unwind_state *state, struct unwind_mappings *mappings)
{
	return UNWIND_OUTCOME_UNSUPPORTED;
}

#endif

/* For the oracle: the sampled registers, stack and walk of one sample in oracle_every. */
static __always_inline void unwind_capture(struct unwind_state *state, __u32 outcome)
{
	struct unwind_oracle *o;
	void *sp = (void *)state->start_sp;

	if (!oracle_every || bpf_get_prandom_u32() % oracle_every)
		return;
	o = bpf_ringbuf_reserve(&unwind_oracle, sizeof(*o), 0);
	if (!o)
		return;
	o->pid = state->key.pid;
	o->pc = state->start_pc;
	o->sp = state->start_sp;
	o->bp = state->start_bp;
	o->outcome = outcome;
	o->pad = 0;
	if (bpf_probe_read_kernel(&o->frames, sizeof(o->frames), &state->stack))
		o->frames.len = 0;
	/* Near the stack's top fewer bytes are mapped: try smaller reads. */
	o->stack_len = UNWIND_ORACLE_STACK;
	if (bpf_probe_read_user(o->stack, UNWIND_ORACLE_STACK, sp)) {
		o->stack_len = 4096;
		if (bpf_probe_read_user(o->stack, 4096, sp))
			o->stack_len = 0;
	}
	bpf_ringbuf_submit(o, 0);
}

/* A hash of the frames (never 0): the unwound stack map's key. */
static __always_inline __u64 unwind_hash(struct unwind_stack *stack)
{
	__u64 h = 0xcbf29ce484222325ULL ^ stack->len;
	__u32 i;

	for (i = 0; i < UNWIND_MAX_FRAMES; i++) {
		if (i >= stack->len)
			break;
		h ^= stack->ips[i];
		h *= 0x100000001b3ULL;
		h ^= h >> 29;
	}
	return h ? h : 1;
}

#endif
