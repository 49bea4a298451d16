/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * process: the structs and constants shared by process.bpf.c and the Rust
 * loader (bpf/abi.rs). The one definition: build.rs turns every `#define
 * NAME <integer>` into a Rust constant, and a Rust test checks the mirrors
 * of the structs against the compiled object's BTF.
 */
#ifndef SONDE_PROCESS_H
#define SONDE_PROCESS_H

/* Bytes of argv kept per exec (the `args_max` constant may lower it). */
#define PROC_ARGS_MAX 4096
/* Bytes of path components kept per path (exe, cwd). */
#define PROC_PATH_MAX 1024
/* One component at most (NAME_MAX + NUL): the slack after PROC_PATH_MAX. */
#define PROC_NAME_MAX 256
/* PROC_PATH_MAX + PROC_NAME_MAX (checked in process.bpf.c). */
#define PROC_PATH_BUF 1280
/* Components (and mount crossings) walked per path. */
#define PROC_PATH_DEPTH 40

/* Default capacities (entries); user space may override them before load. */
#define PROC_MAX_PROCS 65536
#define PROC_MAX_CGROUPS 4096
#define PROC_MAX_FILTERS 1024
#define PROC_RING_BYTES 8388608

/* Record kinds (`proc_head.kind`). */
#define PROC_EVENT_EXEC 1
#define PROC_EVENT_FORK 2
#define PROC_EVENT_EXIT 3

/* `proc_head.flags`. */
/* argv was longer than kept: `args` is a byte-exact prefix. */
#define PROC_FLAG_ARGS_TRUNCATED 1
/* The exe path had more components or bytes than kept. */
#define PROC_FLAG_EXE_TRUNCATED 2
/* The cwd path had more components or bytes than kept. */
#define PROC_FLAG_CWD_TRUNCATED 4
/* argv could not be read (the record has none). */
#define PROC_FLAG_ARGS_FAILED 8
/* The kernel map did not know the process (it predates the programs, or
 * the map was full): `key_ns` is 0 and user space matches on start time. */
#define PROC_FLAG_KEY_UNKNOWN 16

/* `proc_key.flags`: why a process' records are not sent. */
#define PROC_DROP_FILTERED 1
#define PROC_DROP_THROTTLED 2

/* `proc_binaries` values. */
#define PROC_BINARY_INCLUDE 1
#define PROC_BINARY_EXCLUDE 2

/* Indexes of the `proc_stats` per-CPU array. */
/* The ring buffer had no room: a record is lost. */
#define PROC_STAT_RINGBUF_FULL 0
/* `proc_keys` had no room: the process' exit will carry no key. */
#define PROC_STAT_KEYS_FULL 1
/* argv could not be read at exec. */
#define PROC_STAT_ARGS_FAILED 2
/* Records not sent because a filter left the process out. */
#define PROC_STAT_FILTERED 3
/* Records not sent because the cgroup exceeded its exec rate. */
#define PROC_STAT_THROTTLED 4
/* Every sched_process_fork (threads and kernel threads too): what
 * /proc/stat `processes` counts, for the kernel check. */
#define PROC_STAT_CLONES 5
#define PROC_STAT_COUNT 6

/* Value of `proc_keys` (tgid →): what identifies a process and its parent,
 * kept from its exec or fork to its exit. */
struct proc_key {
	/* Its identity time, boot ns: the exec (or, never exec'd, the fork). */
	__u64 key_ns;
	/* The parent's identity time at the fork or exec; 0 unknown. */
	__u64 parent_key_ns;
	/* The parent's start, boot ns. */
	__u64 parent_start_ns;
	__u32 ppid;
	/* PROC_DROP_*: its records are not sent. */
	__u32 flags;
};

/* First in every record. */
struct proc_head {
	/* PROC_EVENT_*. */
	__u32 kind;
	/* PROC_FLAG_*. */
	__u32 flags;
	/* Process id (tgid). */
	__u32 pid;
	/* The thread that ran the hook (exit: the last thread). */
	__u32 tid;
	/* When, boot ns. */
	__u64 time_ns;
	/* The process' identity (`proc_key`). */
	struct proc_key key;
	/* The process' start (its leader's), boot ns. */
	__u64 start_ns;
	/* cgroup v2 id. */
	__u64 cgroup_id;
	char comm[16];
};

/* PROC_EVENT_EXEC. Paths are components leaf first, each NUL-terminated
 * (user space reverses them); `args` is argv as the process has it, NUL
 * separated, sent up to `args_len` bytes (the record ends there). */
struct proc_exec {
	struct proc_head head;
	/* Real and effective user and group ids after the exec. */
	__u32 uid;
	__u32 euid;
	__u32 gid;
	__u32 egid;
	/* Login (audit) uid; 4294967295 unset. */
	__u32 auid;
	__u32 args_len;
	__u16 exe_len;
	__u16 cwd_len;
	/* Scratch of the path walk (its running length); 0 when sent. */
	__u32 _pad;
	char exe[PROC_PATH_BUF];
	char cwd[PROC_PATH_BUF];
	char args[PROC_ARGS_MAX];
};

/* PROC_EVENT_FORK (only with `emit_forks`): a new process (not a thread). */
struct proc_fork {
	struct proc_head head;
};

/* PROC_EVENT_EXIT: the last thread of a process exited. */
struct proc_exit {
	struct proc_head head;
	/* As wait(2) reports it: exit code << 8, or the signal (| 0x80 core). */
	__u32 status;
	__u32 _pad;
};

/* Value of `proc_rates` (cgroup id →): execs in the current second. */
struct proc_rate {
	__u64 window_ns;
	__u64 count;
	/* Execs refused since load. */
	__u64 throttled;
};

#endif
