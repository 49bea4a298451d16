/*
 * Workloads for the profile source's stack walker (tests/bpf_unwind.rs),
 * built -O2 -fomit-frame-pointer: no frame pointer anywhere, so only
 * .eh_frame tables give whole stacks.
 *
 *   sonde-unwind qsort SECONDS     main -> work -> qsort -> cmp (cmp burns CPU)
 *   sonde-unwind thread SECONDS    the same in a second thread (ends at clone3)
 *   sonde-unwind deep SECONDS      a 200-deep recursion burning at the bottom
 *   sonde-unwind signal SECONDS    SIGPROF handler burning CPU, over a spin loop
 *
 * Prints `cpu_ns=N` (its CPU time) at the end.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static double seconds;
static volatile unsigned long sink;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) int sonde_unwind_cmp(const void *a, const void *b)
{
	unsigned long x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	for (int i = 0; i < 2000; i++)
		sink += x * i ^ y;
	return x < y ? -1 : x > y;
}

__attribute__((noinline)) void sonde_unwind_work(void)
{
	enum { N = 4096 };
	unsigned int *v = malloc(N * sizeof(*v));
	double end = now() + seconds;

	while (now() < end) {
		for (int i = 0; i < N; i++)
			v[i] = (unsigned int)rand();
		qsort(v, N, sizeof(*v), sonde_unwind_cmp);
	}
	free(v);
}

static void *thread_main(void *arg)
{
	(void)arg;
	sonde_unwind_work();
	return NULL;
}

__attribute__((noinline)) unsigned long sonde_unwind_burn(void)
{
	unsigned long x = 0;

	for (int i = 0; i < 100000; i++)
		sink += x += i;
	return x;
}

__attribute__((noinline)) unsigned long sonde_unwind_deep(int depth, double end)
{
	unsigned long r;

	if (depth == 0) {
		r = 0;
		while (now() < end)
			r += sonde_unwind_burn();
		return r;
	}
	r = sonde_unwind_deep(depth - 1, end);
	/* Work after the call: no tail call. */
	sink += r + depth;
	return r + 1;
}

__attribute__((noinline)) void sonde_unwind_handler(int sig)
{
	(void)sig;
	/* About half of the 20 ms between signals. */
	for (int i = 0; i < 60; i++)
		sonde_unwind_burn();
}

__attribute__((noinline)) void sonde_unwind_spin(double end)
{
	while (now() < end)
		sink++;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s qsort|thread|deep|signal SECONDS\n", argv[0]);
		return 2;
	}
	seconds = atof(argv[2]);
	if (!strcmp(argv[1], "qsort")) {
		sonde_unwind_work();
	} else if (!strcmp(argv[1], "thread")) {
		pthread_t t;

		pthread_create(&t, NULL, thread_main, NULL);
		pthread_join(t, NULL);
	} else if (!strcmp(argv[1], "deep")) {
		sink += sonde_unwind_deep(200, now() + seconds);
	} else if (!strcmp(argv[1], "signal")) {
		struct itimerval timer = { { 0, 20000 }, { 0, 20000 } };

		signal(SIGPROF, sonde_unwind_handler);
		setitimer(ITIMER_PROF, &timer, NULL);
		sonde_unwind_spin(now() + seconds);
		timer.it_value.tv_usec = 0;
		timer.it_interval.tv_usec = 0;
		setitimer(ITIMER_PROF, &timer, NULL);
	} else {
		return 2;
	}
	struct timespec cpu;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	printf("cpu_ns=%lld\n", (long long)cpu.tv_sec * 1000000000LL + cpu.tv_nsec);
	return 0;
}
