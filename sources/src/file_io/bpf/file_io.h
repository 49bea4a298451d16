/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * file_io: the structs and constants shared by file_io.bpf.c and the Rust
 * loader (bpf/abi.rs). build.rs turns every `#define NAME <integer>` into a
 * Rust constant; a Rust test checks the struct mirrors against the BTF.
 */
#ifndef SONDE_FILE_IO_H
#define SONDE_FILE_IO_H

/* Operations, the index of `fio_value.op`. */
#define FIO_OP_READ 0
#define FIO_OP_WRITE 1
#define FIO_OP_FSYNC 2
#define FIO_OPS 3

/* Latencies, log2 of nanoseconds: slot 0 <= 1 us (2^10 ns), the last
 * slot everything above 2^(10+18) ns (about 0.27 s). */
#define FIO_LAT_MIN_SHIFT 10
#define FIO_LAT_SLOTS 20

/* Default capacity of `fio_files` ((process, file) pairs); user space may
 * override it before load. */
#define FIO_MAX_FILES 4096
/* Processes in the `pids` filter. */
#define FIO_MAX_PIDS 1024
/* Threads inside a traced call at once. */
#define FIO_MAX_INFLIGHT 16384
/* The new-file ring buffer (bytes). */
#define FIO_RING_BYTES 65536
/* A new file's path, as the chain of its dentries' names up to its file
 * system's root: at most FIO_PATH_DEPTH names of FIO_NAME_LEN bytes. */
#define FIO_PATH_DEPTH 16
#define FIO_NAME_LEN 64

/* Indexes of the `fio_stats` per-CPU array: what the programs lost. */
/* `fio_files` had no room: a call on a new (process, file) not counted. */
#define FIO_STAT_FILES_FULL 0
/* The new-file ring buffer was full: the file's path stays unknown. */
#define FIO_STAT_RING_FULL 1
/* `fio_inflight` had no room: a call not timed nor counted. */
#define FIO_STAT_INFLIGHT_FULL 2
#define FIO_STAT_COUNT 3

/* Key of `fio_files`: one process' use of one regular file. */
struct fio_key {
	__u64 cgroup_id;
	/* The inode number, and its file system's device (kernel dev_t:
	 * major << 20 | minor). */
	__u64 ino;
	__u32 dev;
	__u32 pid;
};

/* One operation's totals on a file. */
struct fio_op_stats {
	/* Calls, calls that failed, bytes moved (successful calls' results). */
	__u64 calls;
	__u64 errors;
	__u64 bytes;
	/* Time inside the calls (ns), and as a histogram. */
	__u64 ns;
	__u64 slots[FIO_LAT_SLOTS];
};

/* Value of `fio_files`. */
struct fio_value {
	struct fio_op_stats op[FIO_OPS];
	char comm[16];
};

/* A (process, file) seen for the first time, through `fio_new`: user space
 * reads the path from the fd while the call's file is likely open, and
 * else joins `names` under the file system's mount point. */
struct fio_new_file {
	struct fio_key key;
	__u32 fd;
	/* Names filled, the file's own first; FIO_PATH_DEPTH + 1 when the
	 * root was not reached within FIO_PATH_DEPTH. */
	__u32 depth;
	char names[FIO_PATH_DEPTH][FIO_NAME_LEN];
};

#endif
