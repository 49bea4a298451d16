// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * protocols, kernel 5.15+: the same records as protocols.bpf.c from exit
 * programs alone, each reading its call's arguments from the task's entry
 * registers (bpf_task_pt_regs, see sonde_args.h), with the fd table walked
 * from the task's BTF pointer. One program run per data call instead of
 * two, and no per-call stash. User space loads this object where the
 * kernel has the helper, else protocols_task.bpf.o (5.11+), else
 * protocols.bpf.o.
 */
#define PROTO_TASK_STORAGE 1
#define PROTO_ARGS_AT_EXIT 1
#include "protocols.bpf.c"
