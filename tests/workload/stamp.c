// stamp: measures the longest stall a process observes itself, for the
// frozen-time benchmarks.
//
//	stamp REPORT MIB
//
// It touches MIB MiB of memory, then loops: sleep 1 ms, read the monotonic
// clock, and keep the largest gap between two readings. Signals:
//
//	SIGUSR1  forget the largest gap so far (a measurement starts)
//	SIGUSR2  append "maxgap_us=G" to REPORT (a measurement ends)
//	SIGTTOU  fork a child that exits at once, and append "fork_us=F" to
//	         REPORT: what a fork of this process costs it
//	SIGTTIN  write one word in each page of a tenth of its memory, and
//	         append "wrote=B" to REPORT
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t reset, report, forkreq, writereq;
static void on_usr1(int s) { (void)s; reset = 1; }
static void on_usr2(int s) { (void)s; report = 1; }
static void on_ttou(int s) { (void)s; forkreq = 1; }
static void on_ttin(int s) { (void)s; writereq = 1; }

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void say(const char *path, const char *key, long long v) {
	FILE *f = fopen(path, "a");
	if (f) {
		fprintf(f, "%s=%lld\n", key, v);
		fclose(f);
	}
}

int main(int argc, char **argv) {
	if (argc != 3) { fprintf(stderr, "usage: stamp REPORT MIB\n"); return 2; }
	size_t bytes = (size_t)atoll(argv[2]) << 20;
	char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) { perror("mmap"); return 1; }
	for (size_t i = 0; i < bytes; i += 4096) mem[i] = (char)(i >> 12);
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	signal(SIGTTOU, on_ttou);
	signal(SIGTTIN, on_ttin);
	say(argv[1], "ready", 1);
	int64_t last = now_ns(), maxgap = 0;
	unsigned char round = 0;
	for (;;) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		int64_t t = now_ns();
		if (t - last > maxgap) maxgap = t - last;
		last = t;
		if (reset) { reset = 0; maxgap = 0; }
		if (report) { report = 0; say(argv[1], "maxgap_us", maxgap / 1000); }
		if (forkreq) {
			forkreq = 0;
			int64_t f0 = now_ns();
			pid_t k = fork();
			if (k == 0) _exit(0);
			int64_t f1 = now_ns();
			waitpid(k, NULL, 0);
			say(argv[1], "fork_us", (f1 - f0) / 1000);
			last = now_ns();
		}
		if (writereq) {
			writereq = 0;
			round++;
			for (size_t i = 0; i < bytes / 10; i += 4096) mem[i] = (char)(round + (i >> 12));
			say(argv[1], "wrote", (long long)(bytes / 10));
			last = now_ns();
		}
	}
}
