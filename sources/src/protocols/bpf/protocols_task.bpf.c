// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * protocols, kernel 5.11+: the same programs and maps as protocols.bpf.c,
 * with the per-thread call stash in task storage and the fd table walked
 * from the task's BTF pointer (plain loads instead of probe reads). User
 * space loads this object where the kernel has task storage, else
 * protocols.bpf.o.
 */
#define PROTO_TASK_STORAGE 1
#include "protocols.bpf.c"
