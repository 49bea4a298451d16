/*
 * A CPU workload with known hot functions, for the profile tests and
 * benchmark. Built by them with frame pointers:
 *   gcc -O1 -g -fno-omit-frame-pointer -pthread hot.c -o sonde-hot
 *
 *   sonde-hot hot SECONDS THREADS   THREADS threads spin in sonde_test_hot_fn
 *                                   until each used SECONDS of CPU time
 *   sonde-hot syscall SECONDS       reads /dev/zero in sonde_test_syscall_fn
 *                                   until it used SECONDS of CPU time
 *   sonde-hot badfp SECONDS         spins in sonde_test_bad_fp_fn with the
 *                                   frame pointer register holding a chain
 *                                   of 100 fake frames (x86-64): what code
 *                                   built without frame pointers looks like
 *                                   to a frame-pointer walk
 *
 * At exit it prints `cpu_ns=N`: the process' own CPU time
 * (CLOCK_PROCESS_CPUTIME_ID), the independent count the sample count is
 * checked against.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static double cpu_seconds(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void sonde_test_hot_fn(double seconds)
{
	unsigned long x = sink;

	while (cpu_seconds(CLOCK_THREAD_CPUTIME_ID) < seconds) {
		for (int i = 0; i < 200000; i++)
			x = x * 6364136223846793005UL + 1442695040888963407UL;
		sink = x;
	}
}

__attribute__((noinline)) void *sonde_test_thread(void *arg)
{
	sonde_test_hot_fn(*(double *)arg);
	return NULL;
}

__attribute__((noinline)) void sonde_test_syscall_fn(double seconds)
{
	static char buf[1 << 20];
	int fd = open("/dev/zero", O_RDONLY);

	if (fd < 0) {
		perror("/dev/zero");
		exit(1);
	}
	while (cpu_seconds(CLOCK_THREAD_CPUTIME_ID) < seconds) {
		if (read(fd, buf, sizeof(buf)) < 0) {
			perror("read");
			exit(1);
		}
	}
	close(fd);
}

/* 100 fake frames {next frame, return address}: each links to the next,
 * and the return addresses are in the unmapped first page. */
static unsigned long fake_frames[2 * 101];

__attribute__((noinline)) void sonde_test_bad_fp_fn(double seconds)
{
	for (int i = 0; i < 100; i++) {
		fake_frames[2 * i] = (unsigned long)&fake_frames[2 * (i + 1)];
		fake_frames[2 * i + 1] = 0x100 + 16 * i;
	}
	while (cpu_seconds(CLOCK_THREAD_CPUTIME_ID) < seconds) {
#ifdef __x86_64__
		unsigned long n = 20000000;

		/* rbp is a general register here, as in code built without
		 * frame pointers; r12 keeps the real one meanwhile. */
		__asm__ volatile("mov %%rbp, %%r12\n\t"
				 "mov %1, %%rbp\n\t"
				 "1: dec %0\n\t"
				 "jnz 1b\n\t"
				 "mov %%r12, %%rbp\n\t"
				 : "+r"(n)
				 : "r"(fake_frames)
				 : "r12", "cc", "memory");
#else
		exit(3);
#endif
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s hot SECONDS THREADS | syscall SECONDS\n", argv[0]);
		return 2;
	}
	double seconds = atof(argv[2]);

	if (strcmp(argv[1], "hot") == 0) {
		int n = argc > 3 ? atoi(argv[3]) : 1;
		pthread_t threads[64];

		if (n < 1 || n > 64)
			return 2;
		for (int i = 0; i < n; i++)
			pthread_create(&threads[i], NULL, sonde_test_thread, &seconds);
		for (int i = 0; i < n; i++)
			pthread_join(threads[i], NULL);
	} else if (strcmp(argv[1], "syscall") == 0) {
		sonde_test_syscall_fn(seconds);
	} else if (strcmp(argv[1], "badfp") == 0) {
		sonde_test_bad_fp_fn(seconds);
	} else {
		return 2;
	}
	printf("cpu_ns=%.0f\n", cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) * 1e9);
	return 0;
}
