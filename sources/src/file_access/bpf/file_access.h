/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * file_access: the structs and constants shared by file_access.bpf.c and
 * the Rust loader (bpf/abi.rs). build.rs turns every `#define NAME
 * <integer>` into a Rust constant; a Rust test checks the struct mirrors
 * against the compiled object's BTF.
 */
#ifndef SONDE_FILE_ACCESS_H
#define SONDE_FILE_ACCESS_H

/* What an open asks for, from its flags (the `flags` policy). */
#define FA_READ 1
#define FA_WRITE 2
#define FA_CREATE 4
#define FA_TRUNCATE 8

/* Which call. */
#define FA_OP_OPEN 0
#define FA_OP_OPENAT 1
#define FA_OP_OPENAT2 2
#define FA_OP_CREAT 3

/* An opened file's path, as its dentries' names from the file up to the
 * global root (mounts crossed, each crossing an empty slot): at most
 * FA_DEPTH slots of FA_NAME_LEN. */
#define FA_DEPTH 16
#define FA_NAME_LEN 64
/* A failed open's requested name (what the caller passed). */
#define FA_REQUEST_LEN 256

/* Policy sizes. */
#define FA_MAX_DIRS 64
#define FA_MAX_PREFIXES 8
#define FA_PREFIX_LEN 64
#define FA_MAX_BINARIES 64
#define FA_MAX_CGROUPS 256
/* (process, file, flags) pairs remembered for the dedup window. */
#define FA_DEDUP_ENTRIES 16384
#define FA_MAX_PENDING 16384
/* Files whose path-policy verdict is remembered, and for how long (ns). */
#define FA_VERDICT_ENTRIES 8192
#define FA_VERDICT_NS 1000000000ULL
/* The event ring buffer (bytes). */
#define FA_RING_BYTES (1 << 20)

/* Indexes of the `fa_stats` per-CPU array. Opens not reported on purpose: */
#define FA_STAT_FILTERED_CGROUP 0
#define FA_STAT_FILTERED_BINARY 1
#define FA_STAT_FILTERED_FLAGS 2
#define FA_STAT_FILTERED_PATH 3
#define FA_STAT_FILTERED_FAILED 4
#define FA_STAT_DEDUPLICATED 5
#define FA_STAT_THROTTLED 6
/* ... and lost: */
#define FA_STAT_RING_FULL 7
#define FA_STAT_PENDING_FULL 8
#define FA_STAT_COUNT 9

/* One reported open, through the `fa_events` ring buffer. */
struct fa_event {
	/* bpf_ktime_get_ns() at the call's return. */
	__u64 mono_ns;
	__u64 cgroup_id;
	/* The opened file (success only): device (kernel numbering), inode. */
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__u32 tid;
	__u32 uid;
	/* The fd returned, or -errno. */
	__s32 ret;
	/* The open flags as passed, and what they ask for (FA_READ ...). */
	__u32 open_flags;
	__u32 access;
	__u32 op;
	/* Names filled in `path` (the file's own first); FA_DEPTH + 1 when the
	 * root was not reached. Failed opens: 0, `request` holds the name. */
	__u32 depth;
	__u32 _pad;
	char comm[16];
	char path[FA_DEPTH][FA_NAME_LEN];
	char request[FA_REQUEST_LEN];
};

#endif
