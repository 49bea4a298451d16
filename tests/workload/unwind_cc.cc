// A C++ workload for the profile source's stack walker (tests/bpf_unwind.rs),
// built -O2 -fomit-frame-pointer: throws and catches exceptions through a
// few frames, so the samples are in libstdc++ and libgcc_s's unwinder.
// Usage: sonde-unwind-cc SECONDS; prints `cpu_ns=N`.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <stdexcept>

static volatile unsigned long sink;

__attribute__((noinline)) void sonde_cc_throw(int depth)
{
	if (depth == 0)
		throw std::runtime_error("sonde");
	sonde_cc_throw(depth - 1);
	sink++;
}

__attribute__((noinline)) void sonde_cc_work(double seconds)
{
	auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
	while (std::chrono::steady_clock::now() < end) {
		for (int i = 0; i < 100; i++) {
			try {
				sonde_cc_throw(8);
			} catch (const std::exception &e) {
				sink += e.what()[0];
			}
		}
	}
}

int main(int argc, char **argv)
{
	sonde_cc_work(argc > 1 ? std::atof(argv[1]) : 1.0);
	timespec cpu;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
	std::printf("cpu_ns=%lld\n", (long long)cpu.tv_sec * 1000000000LL + cpu.tv_nsec);
	return 0;
}
