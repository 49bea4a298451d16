// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * energy: on-CPU time per process (tgid) and cgroup, accounted in the
 * kernel at every context switch, for attributing node energy.
 *
 *   sched:sched_switch  the slice that ends now belongs to `current`, which
 *                       is still the task being switched out: add it to
 *                       (tgid, cgroup).
 *
 * A slice is measured with the scheduler's own task clock, the thread's
 * se.sum_exec_runtime (read with CO-RE; the scheduler updated it just
 * before this tracepoint) minus its value at the thread's previous
 * switch-out, kept per thread in an LRU map. That is the clock behind
 * /proc/PID/stat and getrusage: it leaves out time stolen by a hypervisor
 * and, with IRQ time accounting, interrupts, which the wall clock between
 * two switches would count. A thread started after attach has a baseline
 * of 0; one that existed before (first slice, or evicted from the LRU map)
 * is timed once by the wall clock since this CPU's previous switch, and
 * counted (ENERGY_STAT_NO_BASELINE). The idle task (tgid 0) has no task
 * clock and is timed by the wall clock.
 *
 * Per switch: a per-CPU array lookup, two hash lookups (thread, process),
 * two CO-RE reads and one atomic add; the (tgid, cgroup) entry and the
 * group leader's name are created once per process. The task clock costs
 * about 60 ns of the total over wall-clock slices (measured here).
 *
 * A slice still running when user space reads is not in the map yet; user
 * space forces a switch on every CPU before it reads (see the Rust loader).
 * Minimum kernel: 5.5 (BTF in sysfs, bpf_probe_read_kernel);
 * bpf_get_current_cgroup_id needs cgroup v2 for meaningful ids.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "energy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Set from user space before load: CLOCK_MONOTONIC just before attach.
 * A thread that started later has run only while the program was attached.
 */
const volatile __u64 attach_ns = 0;

/* Only the fields read; CO-RE relocates them by name. */
struct sched_entity___sonde {
	__u64 sum_exec_runtime;
} __attribute__((preserve_access_index));

struct task_struct___sonde {
	struct task_struct___sonde *group_leader;
	char comm[ENERGY_COMM_LEN];
	/* CLOCK_MONOTONIC ns since 5.5 (boot-based before). */
	__u64 start_time;
	struct sched_entity___sonde se;
} __attribute__((preserve_access_index));

/* When this CPU's current slice began (0: no switch seen since attach). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} energy_start SEC(".maps");

/* Task clock of each thread at its last switch-out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, ENERGY_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct energy_thread);
} energy_threads SEC(".maps");

/*
 * Preallocated (the default) so the hot path never allocates. Not LRU: an
 * evicted entry would silently lose a process' time; a full map is counted
 * instead, and user space deletes exited processes every interval.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, ENERGY_MAX_TASKS);
	__type(key, struct energy_key);
	__type(value, struct energy_value);
} energy_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENERGY_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} energy_stats SEC(".maps");

static __always_inline void add_stat(__u32 stat, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&energy_stats, &stat);

	if (value)
		*value += n;
}

/* First slice of a process: create its entry, named after its leader. */
static __always_inline void add_new(struct task_struct___sonde *task, struct energy_key *key, __u64 delta)
{
	struct energy_value value = { .on_cpu_ns = delta };
	struct task_struct___sonde *leader = BPF_CORE_READ(task, group_leader);
	struct energy_value *found;
	long err;

	if (!leader || bpf_core_read_str(value.comm, sizeof(value.comm), &leader->comm) <= 0) {
		add_stat(ENERGY_STAT_COMM_FAILED, 1);
		bpf_get_current_comm(value.comm, sizeof(value.comm));
	}
	err = bpf_map_update_elem(&energy_tasks, key, &value, BPF_NOEXIST);
	if (!err)
		return;
	/* -EEXIST: another CPU of the same process created it meanwhile. */
	if (err == -17) {
		found = bpf_map_lookup_elem(&energy_tasks, key);
		if (found) {
			__sync_fetch_and_add(&found->on_cpu_ns, delta);
			return;
		}
	}
	add_stat(ENERGY_STAT_MAP_FULL, 1);
	add_stat(ENERGY_STAT_LOST_NS, delta);
}

/*
 * The task-clock time `task` (thread `tid`) ran since its previous
 * switch-out; `wall` is the wall-clock time since this CPU's previous
 * switch (0 when unknown), the fallback.
 */
static __always_inline __u64 slice_ns(struct task_struct___sonde *task, __u32 tid, __u64 wall)
{
	struct energy_thread now = {
		.sum_exec_ns = BPF_CORE_READ(task, se.sum_exec_runtime),
		.start_time = BPF_CORE_READ(task, start_time),
	};
	struct energy_thread *last = bpf_map_lookup_elem(&energy_threads, &tid);
	__u64 delta;

	if (last && last->start_time == now.start_time && now.sum_exec_ns >= last->sum_exec_ns) {
		delta = now.sum_exec_ns - last->sum_exec_ns;
		last->sum_exec_ns = now.sum_exec_ns;
		return delta;
	}
	if (now.start_time >= attach_ns) {
		delta = now.sum_exec_ns;
	} else {
		delta = wall;
		add_stat(ENERGY_STAT_NO_BASELINE, 1);
	}
	/* LRU: never full, an old thread is evicted instead. */
	bpf_map_update_elem(&energy_threads, &tid, &now, BPF_ANY);
	return delta;
}

SEC("tracepoint/sched/sched_switch")
int sched_switch(void *ctx)
{
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 *start = bpf_map_lookup_elem(&energy_start, &zero);
	struct task_struct___sonde *task;
	struct energy_key key = {};
	struct energy_value *value;
	__u64 pid_tgid, then, delta;

	if (!start)
		return 0;
	then = *start;
	*start = now;
	pid_tgid = bpf_get_current_pid_tgid();
	key.tgid = pid_tgid >> 32;
	task = (void *)bpf_get_current_task();
	if (key.tgid == 0)
		/* The idle task; 0 on the first switch of a CPU since attach. */
		delta = then ? now - then : 0;
	else
		delta = slice_ns(task, (__u32)pid_tgid, then ? now - then : 0);
	if (!delta)
		return 0;
	key.cgroup_id = bpf_get_current_cgroup_id();
	value = bpf_map_lookup_elem(&energy_tasks, &key);
	/* Threads of one process run on several CPUs at once: atomic. */
	if (value)
		__sync_fetch_and_add(&value->on_cpu_ns, delta);
	else
		add_new(task, &key, delta);
	return 0;
}
