/*
 * Off-CPU workloads with known waiting functions, for the offcpu tests and
 * benchmark. Built with frame pointers:
 *   gcc -O1 -g -fno-omit-frame-pointer waits.c -o sonde-waits
 *
 * The system calls are made inline (x86-64 `syscall`) from the named
 * functions, so the user stack's leaf is the function that waits, not a
 * libc wrapper built without frame pointers (whose caller the walk would
 * skip).
 *
 *   sonde-waits sleep N       N × clock_nanosleep(10 ms) in sleep_here
 *   sonde-waits pingpong N    N round trips of one byte over two pipes,
 *                             parent waits in ping_wait, child in pong_wait
 *
 * Each prints `ready PID…` (its pids), waits for a byte on stdin, runs,
 * prints `done NS` (for sleep: the sleeps' total by its own clock), and
 * waits for another byte before it exits, so it can be symbolized alive.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline __attribute__((always_inline)) long raw4(long n, long a, long b, long c, long d)
{
#if defined(__x86_64__)
	long ret;
	register long r10 __asm__("r10") = d;

	__asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
	return ret;
#else
	return syscall(n, a, b, c, d);
#endif
}

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

__attribute__((noinline)) void sleep_here(void)
{
	struct timespec t = { 0, 10 * 1000 * 1000 };

	raw4(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, (long)&t, 0);
}

__attribute__((noinline)) void ping_wait(int fd, char *byte)
{
	raw4(SYS_read, fd, (long)byte, 1, 0);
}

__attribute__((noinline)) void pong_wait(int fd, char *byte)
{
	raw4(SYS_read, fd, (long)byte, 1, 0);
}

static void wait_go(void)
{
	char c;

	if (read(0, &c, 1) != 1)
		exit(1);
}

int main(int argc, char **argv)
{
	long n = argc > 2 ? atol(argv[2]) : 200;
	char byte = 'x';

	if (argc > 1 && strcmp(argv[1], "pingpong") == 0) {
		int ping[2], pong[2];
		pid_t child;

		if (pipe(ping) || pipe(pong))
			return 1;
		child = fork();
		if (child == 0) {
			for (long i = 0; i < n; i++) {
				pong_wait(ping[0], &byte);
				raw4(SYS_write, pong[1], (long)&byte, 1, 0);
			}
			pause();
			return 0;
		}
		printf("ready %d %d\n", getpid(), child);
		fflush(stdout);
		wait_go();
		long long start = now_ns();
		for (long i = 0; i < n; i++) {
			raw4(SYS_write, ping[1], (long)&byte, 1, 0);
			ping_wait(pong[0], &byte);
		}
		printf("done %lld\n", now_ns() - start);
		fflush(stdout);
		wait_go();
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		return 0;
	}
	printf("ready %d\n", getpid());
	fflush(stdout);
	wait_go();
	long long slept = 0;
	for (long i = 0; i < n; i++) {
		long long start = now_ns();

		sleep_here();
		slept += now_ns() - start;
	}
	printf("done %lld\n", slept);
	fflush(stdout);
	wait_go();
	return 0;
}
