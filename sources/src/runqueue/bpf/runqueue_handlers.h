/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The runqueue handlers, included twice by runqueue.bpf.c: once for the
 * tp_btf programs (SCHED_FN(x) = x_btf, task fields read with plain loads,
 * which the verifier allows on BTF-typed arguments) and once for the
 * raw_tp ones (x_raw, bpf_probe_read_kernel). A probe read is a helper
 * call; a plain load is one instruction: this halves the cost per switch.
 */
/* `task` became runnable (woken): its wait starts, unless one is pending. */
static __always_inline int SCHED_FN(on_wakeup)(struct task_struct___sonde *task, int new_task)
{
	struct rq_thread *thread;
	__u32 tid = SCHED_READ(task, pid);
	__u32 pid;
	__u64 cgroup;

	if (!tid)
		return 0;
	pid = SCHED_READ(task, tgid);
	cgroup = SCHED_FN(sched_task_cgroup)(task);
	if (!wanted(pid, cgroup))
		return 0;
	thread = THREAD_ENTRY(task, tid);
	/* A task woken while still queued (preempted) keeps its start. */
	if (!thread || (thread->since_ns && !new_task))
		return 0;
	thread->cgroup_id = cgroup;
	thread->pid = pid;
	thread->since_ns = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int SCHED_FN(on_switch)(int preempt, struct task_struct___sonde *prev, struct task_struct___sonde *next)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tid = SCHED_READ(prev, pid);
	struct rq_thread *thread;
	struct rq_hist *hist;

	if (tid) {
		/* `prev` is still `current` here: the helpers read it cheaply. */
		__u32 state = SCHED_FN(sched_task_state)(prev);
		__u32 pid = bpf_get_current_pid_tgid() >> 32;
		__u64 cgroup = bpf_get_current_cgroup_id();

		if (state) {
			/* Blocked: no wait pending (drop one a spurious wakeup left). */
			thread = THREAD_LOOKUP(prev, tid);
			if (thread)
				thread->since_ns = 0;
		}
		if (wanted(pid, cgroup)) {
			int voluntary = !preempt && state;

			hist = cgroup_hist(cgroup);
			if (hist)
				add_switch(hist, voluntary, CGROUP_HIST);
			if (per_process) {
				hist = process_hist(cgroup, pid, 0);
				if (hist)
					add_switch(hist, voluntary, PROCESS_HIST);
			}
			if (!state) {
				/* Preempted: still runnable, waiting again from now. */
				thread = THREAD_ENTRY(prev, tid);
				if (thread) {
					thread->cgroup_id = cgroup;
					thread->pid = pid;
					thread->since_ns = now;
				}
			}
		}
	}

	tid = SCHED_READ(next, pid);
	if (!tid)
		return 0;
	thread = THREAD_LOOKUP(next, tid);
	if (!thread || !thread->since_ns)
		return 0;
	{
		struct rq_thread seen = *thread;
		__u64 ns = now > seen.since_ns ? now - seen.since_ns : 0;

		thread->since_ns = 0;
		hist = cgroup_hist(seen.cgroup_id);
		if (hist)
			add_wait(hist, ns, CGROUP_HIST);
		if (per_process) {
			hist = process_hist(seen.cgroup_id, seen.pid, next);
			if (hist)
				add_wait(hist, ns, PROCESS_HIST);
		}
	}
	return 0;
}
