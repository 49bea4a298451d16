/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * profile: the unwind tables that user space (src/profile/unwind/) compiles
 * from each ELF file's .eh_frame (or .debug_frame) and the BPF walker
 * (unwind_walk.h) reads, shared with the Rust mirror (bpf/unwind_abi.rs).
 *
 * Three maps, all filled by user space:
 *  - unwind_pids: pid -> its executable mappings (sorted by start), each with
 *    the id of its file's table and the load bias (address - ELF address);
 *  - unwind_files: file id -> where its rows are in the row pool;
 *  - unwind_rows: the row pool, one ARRAY shared by every file; a file's rows
 *    are contiguous and sorted by address. A row holds from its address up to
 *    the next row's.
 *
 * A row says how to find the caller's frame at an address: the CFA
 * (canonical frame address: the stack pointer before the call) is a register
 * (RSP or RBP) plus an offset, the return address is at CFA - 8 (x86-64's
 * call pushes it there), and RBP is unchanged or saved at CFA + 8 * slot.
 * Special rows: PLT stubs (CFA depends on the position in the 16-byte stub),
 * signal trampolines (the interrupted registers are in the ucontext on the
 * stack), the outermost frame (return address undefined: _start, clone3),
 * addresses no CFI covers, and rules the format cannot express.
 *
 * Keep every #define a plain integer: build.rs turns them into Rust constants.
 */
#ifndef SONDE_PROFILE_UNWIND_H
#define SONDE_PROFILE_UNWIND_H

/* Frames kept per unwound user stack (a power of two). */
#define UNWIND_MAX_FRAMES 256
/* Frames walked per program run; then a tail call to the next run. */
#define UNWIND_FRAMES_PER_RUN 16
/*
 * Runs of the walker per sample, each entered by a tail call (the kernel
 * allows 32 in a row on every version): 17 x 16 = 272 >= UNWIND_MAX_FRAMES.
 */
#define UNWIND_MAX_RUNS 17
/* Executable mappings kept per process (a power of two). */
#define UNWIND_MAX_MAPPINGS 128
/* Binary search steps over a process' mappings: log2(UNWIND_MAX_MAPPINGS) + 1. */
#define UNWIND_MAPPING_STEPS 8
/* Binary search steps over a file's rows: files of up to 2^22 rows. */
#define UNWIND_ROW_STEPS 23
/* Largest number of rows one file may have (2^22). */
#define UNWIND_MAX_FILE_ROWS 4194304
/* Processes with tables (default; user space may change it before load). */
#define UNWIND_MAX_PIDS 1024
/* File tables loaded at once (file id 0 means "no table"). */
#define UNWIND_MAX_FILES 8192
/* Default capacity of the row pool: 1 Mi rows of 8 bytes = 8 MiB. */
#define UNWIND_DEFAULT_ROWS 1048576
/* Distinct unwound stacks per interval, per map set (2 KiB each). */
#define UNWIND_MAX_STACKS 1024

/* Row kinds (unwind_row.kind). */
/* CFA = RSP + cfa_offset. */
#define UNWIND_ROW_CFA_RSP 1
/* CFA = RBP + cfa_offset. */
#define UNWIND_ROW_CFA_RBP 2
/* PLT stub: CFA = RSP + 8, + 8 more when (pc & 15) >= cfa_offset. */
#define UNWIND_ROW_PLT 3
/* Signal trampoline (__restore_rt): registers from the ucontext at RSP. */
#define UNWIND_ROW_SIGNAL 4
/* The outermost frame: the return address is undefined. */
#define UNWIND_ROW_END 5
/* No CFI covers the address (a gap between functions): frame pointers. */
#define UNWIND_ROW_NONE 6
/* A rule this format cannot express (DWARF expressions, odd registers). */
#define UNWIND_ROW_UNSUPPORTED 7

/*
 * Why a user stack ends (profile_key.unwind_outcome). User space names
 * them (bpf/unwind_abi.rs) in sonde_profile_stacks_total{outcome}.
 */
/* Not walked here: the kernel walked frame pointers (no tables for the process). */
#define UNWIND_OUTCOME_FRAME_POINTERS 0
/* Reached the outermost frame (_start, clone3: return address undefined). */
#define UNWIND_OUTCOME_COMPLETE 1
/* Frame pointers (code without tables: JIT, Go) ended on a null frame pointer. */
#define UNWIND_OUTCOME_FP_END 2
/* A PC in a file without a loaded table, or not covered by its CFI. */
#define UNWIND_OUTCOME_NO_UNWIND_INFO 3
/* A PC in no executable mapping known for the process (JIT code, maps changed). */
#define UNWIND_OUTCOME_NO_MAPPING 4
/* UNWIND_MAX_FRAMES frames walked: deeper stacks are cut. */
#define UNWIND_OUTCOME_DEPTH_LIMIT 5
/* Reading the stack failed (paged out, or a bad address). */
#define UNWIND_OUTCOME_READ_FAULT 6
/* A CFI rule the table cannot express. */
#define UNWIND_OUTCOME_UNSUPPORTED 7
/* No user registers (a kernel thread). */
#define UNWIND_OUTCOME_NO_USER_STACK 8
/* A frame that makes no sense (the stack pointer went down, a null return address). */
#define UNWIND_OUTCOME_BAD_FRAME 9
#define UNWIND_OUTCOME_COUNT 10

/*
 * profile_key.user_stack_id is -UNWIND_STACK_ID (-ENODATA) when the user
 * stack was walked here: it is in the set's unwound stack map under
 * profile_key.user_stack_hash.
 */
#define UNWIND_STACK_ID 61

struct unwind_row {
	/* ELF virtual address where the row starts. */
	__u32 pc;
	/* UNWIND_ROW_*. */
	__u8 kind;
	/* RBP saved at CFA + 8 * rbp_slot; 0: unchanged. */
	__s8 rbp_slot;
	/* CFA offset (UNWIND_ROW_CFA_*), or the PLT threshold. */
	__s16 cfa_offset;
};

struct unwind_file {
	/* Index of the file's first row in unwind_rows. */
	__u32 first;
	/* Number of rows; 0 while the table is not loaded. */
	__u32 count;
};

struct unwind_mapping {
	__u64 start;
	__u64 end;
	/* Address minus ELF virtual address. */
	__u64 bias;
	/* Index in unwind_files; 0: no table (walk frame pointers). */
	__u32 file;
	__u32 pad;
};

struct unwind_mappings {
	__u32 count;
	__u32 pad;
	struct unwind_mapping mappings[UNWIND_MAX_MAPPINGS];
};

/* Value of the unwound stack maps (key: a hash of the frames). */
struct unwind_stack {
	__u32 len;
	__u32 pad;
	/* Return addresses, innermost (the sampled PC) first. */
	__u64 ips[UNWIND_MAX_FRAMES];
};

/*
 * The oracle (tests only: oracle_every > 0): for some samples, the user
 * registers and the top UNWIND_ORACLE_STACK bytes of the user stack beside
 * the walk's result, so a test can unwind them again in user space with an
 * independent unwinder.
 */
#define UNWIND_ORACLE_STACK 16384
/* Ring buffer bytes while the oracle is on (a page while it is off). */
#define UNWIND_ORACLE_BYTES 1048576

struct unwind_oracle {
	__u32 pid;
	/* Bytes of `stack` read (from `sp` up); 0 when none could be. */
	__u32 stack_len;
	__u64 pc;
	__u64 sp;
	__u64 bp;
	/* UNWIND_OUTCOME_* of the walk. */
	__u32 outcome;
	__u32 pad;
	struct unwind_stack frames;
	__u8 stack[UNWIND_ORACLE_STACK];
};

#endif
