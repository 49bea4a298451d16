/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The task_struct fields the scheduler sources (runqueue, offcpu) read,
 * as CO-RE views: relocated by name against the running kernel's BTF, so
 * no vmlinux.h and no fixed offsets. Both sources' programs include this
 * one file (offcpu by a relative path) so they read a task's state the
 * same way.
 */
#ifndef SONDE_SCHED_TASK_H
#define SONDE_SCHED_TASK_H

#include <bpf/bpf_core_read.h>

struct kernfs_node___sonde {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup___sonde {
	struct kernfs_node___sonde *kn;
} __attribute__((preserve_access_index));

struct css_set___sonde {
	struct cgroup___sonde *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct___sonde {
	int pid;
	int tgid;
	char comm[16];
	struct css_set___sonde *cgroups;
} __attribute__((preserve_access_index));

/* 5.14 renamed `state` (long) to `__state` (unsigned int). */
struct task_struct___state_new {
	unsigned int __state;
} __attribute__((preserve_access_index));

struct task_struct___state_old {
	long state;
} __attribute__((preserve_access_index));

/*
 * Each reader twice: `_raw` with probe reads (helper calls; raw_tp
 * arguments are plain numbers to the verifier), `_btf` with plain loads
 * (tp_btf arguments are typed pointers the verifier lets programs walk,
 * faults caught): one instruction instead of a helper call per field.
 */
#define SCHED_BTF_READ(t, field) ((t)->field)

/* The task's scheduler state: 0 runnable, 1 interruptible, 2 uninterruptible … */
static __always_inline __u32 sched_task_state_raw(struct task_struct___sonde *t)
{
	if (bpf_core_field_exists(struct task_struct___state_new, __state))
		return BPF_CORE_READ((struct task_struct___state_new *)t, __state);
	return (__u32)BPF_CORE_READ((struct task_struct___state_old *)t, state);
}

static __always_inline __u32 sched_task_state_btf(struct task_struct___sonde *t)
{
	if (bpf_core_field_exists(struct task_struct___state_new, __state))
		return ((struct task_struct___state_new *)t)->__state;
	return (__u32)((struct task_struct___state_old *)t)->state;
}

/* The task's cgroup v2 id (the inode number of its directory; 5.5+). */
static __always_inline __u64 sched_task_cgroup_raw(struct task_struct___sonde *t)
{
	return BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
}

static __always_inline __u64 sched_task_cgroup_btf(struct task_struct___sonde *t)
{
	return t->cgroups->dfl_cgrp->kn->id;
}

#endif
