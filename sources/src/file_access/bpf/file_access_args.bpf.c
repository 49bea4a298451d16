// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * file_access, kernel 5.15+: the same policy and events as
 * file_access.bpf.c from exit programs alone, each reading its call's
 * arguments from the registers the task entered the kernel with
 * (bpf_task_pt_regs). User space loads this object where the kernel has
 * that helper, else file_access.bpf.o.
 */
#define FA_ARGS_AT_EXIT 1
#include "file_access.bpf.c"
