/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A syscall's arguments at its exit (kernel 5.15+: bpf_task_pt_regs).
 *
 * The registers a task entered the kernel with stay in its pt_regs until
 * it returns, and a syscall's handler does not change them (restarts and
 * exec aside, which the calls read this way are not), so an exit program
 * can read its call's arguments there: no entry program, nothing stashed
 * per call. The return value goes to ax (x86-64), never over an argument;
 * on arm64 it goes to x0, the first argument, which the kernel keeps in
 * orig_x0.
 *
 * User space loads objects built on this only where the helper exists and
 * sonde_args_supported() is 1 for the architecture (other architectures
 * compile, reading zeros, and are never loaded). Include after
 * <bpf/bpf_helpers.h>.
 */
#ifndef SONDE_ARGS_H
#define SONDE_ARGS_H

#if defined(__TARGET_ARCH_x86)
struct pt_regs___sonde_args {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long r10;
	unsigned long r8;
	unsigned long r9;
} __attribute__((preserve_access_index));

#define SONDE_ARG0(r) ((r)->di)
#define SONDE_ARG1(r) ((r)->si)
#define SONDE_ARG2(r) ((r)->dx)
#define SONDE_ARG3(r) ((r)->r10)
#define SONDE_ARG4(r) ((r)->r8)
#define SONDE_ARG5(r) ((r)->r9)
#elif defined(__TARGET_ARCH_arm64)
struct pt_regs___sonde_args {
	__u64 regs[31];
	__u64 orig_x0;
} __attribute__((preserve_access_index));

#define SONDE_ARG0(r) ((r)->orig_x0)
#define SONDE_ARG1(r) ((r)->regs[1])
#define SONDE_ARG2(r) ((r)->regs[2])
#define SONDE_ARG3(r) ((r)->regs[3])
#define SONDE_ARG4(r) ((r)->regs[4])
#define SONDE_ARG5(r) ((r)->regs[5])
#else
struct pt_regs___sonde_args {
	unsigned long unused;
} __attribute__((preserve_access_index));

#define SONDE_ARG0(r) 0
#define SONDE_ARG1(r) 0
#define SONDE_ARG2(r) 0
#define SONDE_ARG3(r) 0
#define SONDE_ARG4(r) 0
#define SONDE_ARG5(r) 0
#endif

/* The current task's entry registers, a BTF pointer: plain loads. */
static __always_inline struct pt_regs___sonde_args *sonde_entry_regs(void)
{
	return (void *)bpf_task_pt_regs((void *)bpf_get_current_task_btf());
}

#endif
