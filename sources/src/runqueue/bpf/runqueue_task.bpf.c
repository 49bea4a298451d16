// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * runqueue, kernel 5.11+: the same programs and maps as runqueue.bpf.c,
 * tp_btf only, with each thread's pending wait in task storage (reached
 * from the task pointers sched_wakeup and sched_switch pass) instead of a
 * hash keyed by thread id. User space loads this object where the kernel
 * has task storage and takes tp_btf programs, else runqueue.bpf.o.
 */
#define RQ_TASK_STORAGE 1
#include "runqueue.bpf.c"
