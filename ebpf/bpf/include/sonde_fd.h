/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What the syscall-tracepoint sources share: the layout of a syscall
 * tracepoint's record, and the struct file behind an fd of the current
 * task (a CO-RE walk of its fd table: there is no kprobe to mark file or
 * socket calls on the kernels sonde targets). Include after
 * <bpf/bpf_core_read.h>.
 */
#ifndef SONDE_FD_H
#define SONDE_FD_H

/* struct syscall_trace_enter/exit: an 8-byte trace_entry and the syscall
 * number, then the arguments or the return value (stable since 2.6.32). */
struct sonde_sys_enter {
	__u64 common;
	__s64 nr;
	__u64 args[6];
};

struct sonde_sys_exit {
	__u64 common;
	__s64 nr;
	__s64 ret;
};

struct fdtable___sonde_fd {
	unsigned int max_fds;
	void **fd;
} __attribute__((preserve_access_index));

struct files_struct___sonde_fd {
	struct fdtable___sonde_fd *fdt;
} __attribute__((preserve_access_index));

struct task_struct___sonde_fd {
	struct files_struct___sonde_fd *files;
} __attribute__((preserve_access_index));

/* The struct file at `fd` of the current task, or 0. */
static __always_inline void *sonde_fd_file(__s64 fd)
{
	struct task_struct___sonde_fd *task = (void *)bpf_get_current_task();
	struct fdtable___sonde_fd *fdt = BPF_CORE_READ(task, files, fdt);
	void **fds;
	void *file = 0;

	if (fd < 0 || !fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return 0;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return 0;
	return file;
}

#endif
