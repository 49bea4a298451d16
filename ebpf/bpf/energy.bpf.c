// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * energy: on-CPU time per process (tgid) and cgroup, accounted in the
 * kernel at every context switch, for attributing node energy.
 *
 *   sched:sched_switch  the slice that ends now (since this CPU's previous
 *                       switch) belongs to `current`, which is still the
 *                       task being switched out: add it to (tgid, cgroup).
 *
 * One per-CPU timestamp, one hash lookup and one atomic add per switch; the
 * hash entry (and the group leader's name, read with CO-RE) is created once
 * per process. The idle task is tgid 0, so idle time is accounted too.
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

/* Only the fields read; CO-RE relocates them by name. */
struct task_struct___sonde {
	struct task_struct___sonde *group_leader;
	char comm[ENERGY_COMM_LEN];
} __attribute__((preserve_access_index));

/* When this CPU's current slice began (0: no switch seen since attach). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} energy_start SEC(".maps");

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
static __always_inline void add_new(struct energy_key *key, __u64 delta)
{
	struct energy_value value = { .on_cpu_ns = delta };
	struct task_struct___sonde *task = (void *)bpf_get_current_task();
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

SEC("tracepoint/sched/sched_switch")
int sched_switch(void *ctx)
{
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 *start = bpf_map_lookup_elem(&energy_start, &zero);
	struct energy_key key = {};
	struct energy_value *value;
	__u64 then;

	if (!start)
		return 0;
	then = *start;
	*start = now;
	/* The first switch on this CPU since attach: no slice to account. */
	if (!then)
		return 0;
	key.tgid = bpf_get_current_pid_tgid() >> 32;
	key.cgroup_id = bpf_get_current_cgroup_id();
	value = bpf_map_lookup_elem(&energy_tasks, &key);
	/* Threads of one process run on several CPUs at once: atomic. */
	if (value)
		__sync_fetch_and_add(&value->on_cpu_ns, now - then);
	else
		add_new(&key, now - then);
	return 0;
}
