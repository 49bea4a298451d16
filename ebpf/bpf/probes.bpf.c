// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/*
 * probes: empty programs of each attach type that sonde's sources may use.
 * `sonde doctor` loads and attaches each one to learn, for real, whether this
 * kernel and these privileges allow it (a kernel can list a program type and
 * still refuse to attach it, as with fentry without trampolines).
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tracepoint")
int probe_tracepoint(void *ctx)
{
	return 0;
}

SEC("kprobe")
int probe_kprobe(void *ctx)
{
	return 0;
}

SEC("fentry")
int probe_fentry(void *ctx)
{
	return 0;
}

SEC("uprobe")
int probe_uprobe(void *ctx)
{
	return 0;
}

SEC("perf_event")
int probe_perf_event(void *ctx)
{
	return 0;
}
