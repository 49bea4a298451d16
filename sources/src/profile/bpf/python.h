/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * profile: the CPython frames of a sampled thread, walked in the kernel.
 *
 * User space finds Python processes (a `python3.X` or `libpython3.X`
 * mapping), reads `_PyRuntime`'s address from the ELF symbols and the
 * version's struct offsets (a table for 3.8-3.12, `_Py_DebugOffsets` from
 * 3.13), and puts them in `python_procs`. For a sample of such a process
 * the program follows
 *
 *   _PyRuntime.interpreters.head -> PyInterpreterState -> thread states
 *
 * to the sampled thread's state (matched by native thread id from 3.11,
 * by pthread_self(), which is the fs base on x86-64, before), then its
 * frame chain, leaf first, and records each frame's code object address
 * and instruction (f_lasti up to 3.10, the instruction pointer from 3.11)
 * in a Python stack, stored by its hash in the set's `pystacks_N` map.
 * The hash goes in the sample's key (`python_stack_id`). User space
 * resolves code objects to names, files and lines by reading the process'
 * memory, once per code object.
 *
 * Python frames do not depend on native unwinding: they are complete even
 * where the native stack stops at the interpreter (built without frame
 * pointers). To put them at the right place among native frames, each
 * frame's entry byte (3.11 `is_entry`, 3.12+ `owner`, whose value 3 marks
 * the shim frame each call of the C eval loop pushes) goes to user space
 * in the top byte of its instruction word.
 *
 * Needs bounded loops (5.3) and, before 3.11, CO-RE (the task's fs base).
 * x86-64 only for Python before 3.11.
 */
#ifndef SONDE_PROFILE_PYTHON_H
#define SONDE_PROFILE_PYTHON_H

#include <bpf/bpf_core_read.h>

/* Python frames kept per stack, 3.12+'s shim frames included (deeper ones are cut, the stack marked truncated). */
#define PYTHON_MAX_FRAMES 64
/* Thread states searched for the sampled thread. */
#define PYTHON_MAX_THREADS 64
/* Python processes known at once. */
#define PYTHON_MAX_PROCS 4096
/* Distinct Python stacks per interval and set. */
#define PYTHON_MAX_STACKS 1024

/* python_proc.cframe_frame: the thread state points at the frame itself. */
#define PYTHON_NO_CFRAME 65535

/* python_proc.entry_kind: how a frame shows it is an eval loop's outermost. */
/* Every frame (3.8-3.10: one C call per Python call). */
#define PYTHON_ENTRY_EVERY 0
/* The byte at frame_entry is non-zero (3.11 `is_entry`). */
#define PYTHON_ENTRY_FLAG 1
/* The next frame's byte at frame_entry is PYTHON_OWNED_BY_CSTACK (3.12+ shims). */
#define PYTHON_ENTRY_SHIM 2
/* `owner` of a shim frame (FRAME_OWNED_BY_CSTACK). */
#define PYTHON_OWNED_BY_CSTACK 3

/* Special python_stack_id values (real ids are hashes with bit 0 set). */
/* The process is not a known Python process (or the thread has no Python state). */
#define PYTHON_STACK_NONE 0
/* A Python stack not stored: the set's pystacks map was full. */
#define PYTHON_STACK_LOST 2
/* The thread state or first frame could not be read. */
#define PYTHON_STACK_FAULT 4

/* Indexes of `python_stats` (per-CPU totals since load). */
/* Samples of known Python processes. */
#define PYTHON_STAT_SAMPLES 0
/* ... whose thread has no thread state (not a Python thread, or not yet). */
#define PYTHON_STAT_NO_THREAD 1
/* ... whose thread state or frames could not be read. */
#define PYTHON_STAT_FAULT 2
/* ... whose Python stack was deeper than PYTHON_MAX_FRAMES (cut). */
#define PYTHON_STAT_TRUNCATED 3
/* ... whose Python stack was not stored: the pystacks map was full. */
#define PYTHON_STAT_MAP_FULL 4
/* ... with a Python stack stored. */
#define PYTHON_STAT_WALKED 5
#define PYTHON_STAT_COUNT 6

/*
 * Where one Python process keeps its threads and frames: an address and
 * the offsets of its version's structs (see the Rust `python::offsets`).
 */
struct python_proc {
	/* Address of _PyRuntime.interpreters.head. */
	__u64 interp_head;
	/* PyInterpreterState: its first thread state. */
	__u16 interp_threads;
	/* PyThreadState: next, thread_id (pthread_self), native_thread_id (0: none, before 3.11). */
	__u16 tstate_next;
	__u16 tstate_thread_id;
	__u16 tstate_native_tid;
	/* PyThreadState: the frame (<= 3.10), the _PyCFrame (3.11, 3.12), current_frame (3.13+). */
	__u16 tstate_frame;
	/* _PyCFrame: current_frame; PYTHON_NO_CFRAME when tstate_frame is the frame. */
	__u16 cframe_frame;
	/* Frame: previous frame, code object, instruction, entry marker byte. */
	__u16 frame_previous;
	__u16 frame_code;
	__u16 frame_instr;
	__u16 frame_entry;
	/* Bytes of the instruction field: 4 (int f_lasti) or 8 (pointer). */
	__u8 instr_size;
	/* PYTHON_ENTRY_*: how user space reads the entry byte (unused here). */
	__u8 entry_kind;
	__u8 pad[2];
};

/* One Python frame: code object address, instruction | entry byte << 56. */
struct python_frame {
	__u64 code;
	__u64 instr;
};

/* A Python stack, leaf first. */
struct python_stack {
	__u32 len;
	/* Non-zero when frames beyond PYTHON_MAX_FRAMES were cut. */
	__u32 truncated;
	struct python_frame frames[PYTHON_MAX_FRAMES];
};

#ifdef __BPF__

/* The instruction's bits in python_frame.instr (the top byte is the entry byte). */
#define PYTHON_INSTR_MASK ((1ULL << 56) - 1)

struct python_stacks_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PYTHON_MAX_STACKS);
	__type(key, __u64);
	__type(value, struct python_stack);
};

struct python_stacks_map pystacks_0 SEC(".maps");
struct python_stacks_map pystacks_1 SEC(".maps");

/* Filled by user space: pid -> where its Python state is. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PYTHON_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct python_proc);
} python_procs SEC(".maps");

/* The stack being walked (too large for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct python_stack);
} python_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PYTHON_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} python_stats SEC(".maps");

/* The fs base (thread pointer) of the current task: pthread_self() on x86-64. */
struct thread_struct___sonde_py {
	unsigned long fsbase;
} __attribute__((preserve_access_index));

struct task_struct___sonde_py {
	struct thread_struct___sonde_py thread;
} __attribute__((preserve_access_index));

static __always_inline void python_count(__u32 stat)
{
	__u64 *value = bpf_map_lookup_elem(&python_stats, &stat);

	if (value)
		*value += 1;
}

static __always_inline int python_read(__u64 *out, __u64 address)
{
	*out = 0;
	return bpf_probe_read_user(out, sizeof(*out), (const void *)address);
}

/* The sampled thread's PyThreadState, 0 if none. */
static __always_inline __u64 python_thread_state(struct python_proc *proc, __u32 tid, int *fault)
{
	__u64 interp, ts, id, want = tid;
	__u16 id_offset = proc->tstate_native_tid;

	if (python_read(&interp, proc->interp_head) || !interp ||
	    python_read(&ts, interp + proc->interp_threads)) {
		*fault = 1;
		return 0;
	}
	if (!id_offset) {
#ifdef __TARGET_ARCH_x86
		struct task_struct___sonde_py *task = (void *)bpf_get_current_task();

		want = BPF_CORE_READ(task, thread.fsbase);
		id_offset = proc->tstate_thread_id;
#else
		return 0;
#endif
	}
	for (int i = 0; i < PYTHON_MAX_THREADS && ts; i++) {
		if (python_read(&id, ts + id_offset)) {
			*fault = 1;
			return 0;
		}
		if (id == want)
			return ts;
		if (python_read(&ts, ts + proc->tstate_next)) {
			*fault = 1;
			return 0;
		}
	}
	return 0;
}

/*
 * Walks the Python frames of thread `tid` of process `pid` into the per-CPU
 * scratch stack; returns its id (hash, bit 0 set) or a PYTHON_STACK_* value.
 * The loop body is straight-line with one counter, so the verifier's
 * states prune: shim frames are recorded like the others (user space
 * drops them), and the entry byte rides in the instruction word's top
 * byte for user space to read per version.
 */
static __always_inline __u64 python_walk(__u32 pid, __u32 tid)
{
	struct python_proc *proc = bpf_map_lookup_elem(&python_procs, &pid);
	struct python_stack *stack;
	__u64 ts, frame, code, instr, hash = 14695981039346656037ULL;
	__u32 zero = 0, n = 0, instr_size;
	int fault = 0;
	__u8 entry;

	if (!proc)
		return PYTHON_STACK_NONE;
	python_count(PYTHON_STAT_SAMPLES);
	ts = python_thread_state(proc, tid, &fault);
	if (!ts) {
		python_count(fault ? PYTHON_STAT_FAULT : PYTHON_STAT_NO_THREAD);
		return fault ? PYTHON_STACK_FAULT : PYTHON_STACK_NONE;
	}
	if (python_read(&frame, ts + proc->tstate_frame) ||
	    (proc->cframe_frame != PYTHON_NO_CFRAME && frame && python_read(&frame, frame + proc->cframe_frame))) {
		python_count(PYTHON_STAT_FAULT);
		return PYTHON_STACK_FAULT;
	}
	stack = bpf_map_lookup_elem(&python_scratch, &zero);
	if (!stack)
		return PYTHON_STACK_NONE;
	instr_size = proc->instr_size == 4 ? 4 : 8;
	for (int i = 0; i < PYTHON_MAX_FRAMES; i++) {
		if (!frame)
			break;
		code = 0;
		instr = 0;
		entry = 0;
		if (python_read(&code, frame + proc->frame_code) ||
		    bpf_probe_read_user(&instr, instr_size, (const void *)(frame + proc->frame_instr)) ||
		    bpf_probe_read_user(&entry, 1, (const void *)(frame + proc->frame_entry)))
			break;
		stack->frames[i].code = code;
		stack->frames[i].instr = (instr & PYTHON_INSTR_MASK) | ((__u64)entry << 56);
		n = i + 1;
		if (python_read(&frame, frame + proc->frame_previous))
			frame = 0;
	}
	stack->truncated = frame != 0 && n == PYTHON_MAX_FRAMES;
	if (stack->truncated)
		python_count(PYTHON_STAT_TRUNCATED);
	stack->len = n;
	if (n == 0)
		return PYTHON_STACK_NONE;
	for (int i = 0; i < PYTHON_MAX_FRAMES; i++) {
		if (i >= n)
			break;
		hash = (hash ^ stack->frames[i].code) * 1099511628211ULL;
		hash = (hash ^ stack->frames[i].instr) * 1099511628211ULL;
	}
	return hash | 1;
}

/* Stores the scratch stack under `id` in `pystacks` (unless already there). */
static __always_inline __u64 python_store(__u64 id, void *pystacks)
{
	struct python_stack *stack;
	__u32 zero = 0;
	long err;

	if (!(id & 1))
		return id;
	if (bpf_map_lookup_elem(pystacks, &id))
		return id;
	stack = bpf_map_lookup_elem(&python_scratch, &zero);
	if (!stack)
		return PYTHON_STACK_NONE;
	err = bpf_map_update_elem(pystacks, &id, stack, BPF_NOEXIST);
	if (err == -17 /* EEXIST: stored meanwhile by another CPU */)
		return id;
	if (err) {
		/* E2BIG: full. */
		python_count(PYTHON_STAT_MAP_FULL);
		return PYTHON_STACK_LOST;
	}
	python_count(PYTHON_STAT_WALKED);
	return id;
}

#endif /* __BPF__ */

#endif
