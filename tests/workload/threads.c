// threads: a self-verifying multi-threaded workload.
//
//	threads REPORT
//
// Four threads count, each in a thread-local variable and in its slot of a
// shared array, and each checks at every step that gettid() still returns
// the tid it started with and that its thread-local counter equals its
// slot. About every 20 ms the main thread appends
//
//	pid=P n=N c=C0,C1,C2,C3 tids=T0,T1,T2,T3 check=ok
//
// to REPORT (opened by path each time): N sums the counters, C are the
// counters, T the tids, and check=bad:<thread> once a check failed.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NTHREADS 4

static volatile uint64_t slot[NTHREADS];
static volatile pid_t tids[NTHREADS];
static volatile int failed = -1;
static __thread uint64_t mine;

static void *count(void *arg)
{
	int i = (int)(intptr_t)arg;
	pid_t tid = gettid();
	tids[i] = tid;
	for (;;) {
		mine++;
		slot[i] = mine;
		if (gettid() != tid || slot[i] != mine)
			failed = i;
		struct timespec ts = {0, 200000}; // 0.2 ms
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: threads REPORT\n");
		return 2;
	}
	pthread_t th[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, count, (void *)(intptr_t)i)) {
			perror("pthread_create");
			return 1;
		}
	for (;;) {
		usleep(20000);
		uint64_t c[NTHREADS], n = 0;
		for (int i = 0; i < NTHREADS; i++)
			n += c[i] = slot[i];
		char check[32] = "ok";
		if (failed >= 0)
			snprintf(check, sizeof check, "bad:%d", failed);
		FILE *f = fopen(argv[1], "a");
		if (f) {
			fprintf(f, "pid=%d n=%llu c=%llu,%llu,%llu,%llu tids=%d,%d,%d,%d check=%s\n", getpid(),
				(unsigned long long)n, (unsigned long long)c[0], (unsigned long long)c[1],
				(unsigned long long)c[2], (unsigned long long)c[3], tids[0], tids[1], tids[2], tids[3],
				check);
			fclose(f);
		}
	}
}
