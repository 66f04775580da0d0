// cow: a workload for copy-on-write snapshots.
//
//	cow REPORT MIB
//
// It forks one child that sleeps, fills MIB MiB ("buf") with words that
// depend on a generation number (word i of generation g is
// i * 0x9e3779b97f4a7c15 ^ g), and keeps a second region of the same size
// ("kept"). It prints "buf 0x... kept 0x..." on standard output, then every
// 10 ms appends a line to REPORT:
//
//	pid=P gen=G sigchld=N wait=ok|bad mem=ok|bad|unchecked
//
// On SIGUSR1 it copies buf into kept (what buf held: the test compares an
// image's pages with it), moves to the next generation and rewrites all of
// buf. On SIGUSR2 it checks every word of buf against its generation
// (mem=ok or bad on the next line). sigchld counts the SIGCHLDs it got,
// and wait=bad says that a waitpid(-1, WNOHANG) ever returned a child: its
// own child never exits, so a snapshot's copy that the program could wait
// for, or that signalled it, shows here.
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t rewrite, check, sigchld;
static void on_usr1(int s) { (void)s; rewrite = 1; }
static void on_usr2(int s) { (void)s; check = 1; }
static void on_chld(int s) { (void)s; sigchld++; }

static uint64_t *buf, *kept;
static size_t words;
static uint64_t gen;

static void fill(void) {
	for (size_t i = 0; i < words; i++) buf[i] = i * 0x9e3779b97f4a7c15ull ^ gen;
}

static int verify(void) {
	for (size_t i = 0; i < words; i++)
		if (buf[i] != (i * 0x9e3779b97f4a7c15ull ^ gen)) return 0;
	return 1;
}

static uint64_t *region(size_t bytes) {
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(1); }
	return p;
}

int main(int argc, char **argv) {
	if (argc != 3) { fprintf(stderr, "usage: cow REPORT MIB\n"); return 2; }
	size_t bytes = (size_t)atoi(argv[2]) << 20;
	words = bytes / 8;
	pid_t child = fork();
	if (child == 0) {
		for (;;) pause();
	}
	signal(SIGUSR1, on_usr1);
	signal(SIGUSR2, on_usr2);
	signal(SIGCHLD, on_chld);
	buf = region(bytes);
	kept = region(bytes);
	fill();
	printf("buf %p kept %p\n", (void *)buf, (void *)kept);
	fflush(stdout);
	const char *mem = "unchecked";
	int waitbad = 0;
	for (;;) {
		if (rewrite) {
			rewrite = 0;
			memcpy(kept, buf, bytes);
			gen++;
			fill();
		}
		if (check) {
			check = 0;
			mem = verify() ? "ok" : "bad";
		}
		if (waitpid(-1, NULL, WNOHANG) != 0) waitbad = 1;
		FILE *f = fopen(argv[1], "a");
		if (f) {
			fprintf(f, "pid=%d gen=%llu sigchld=%d wait=%s mem=%s\n", getpid(), (unsigned long long)gen,
				(int)sigchld, waitbad ? "bad" : "ok", mem);
			fclose(f);
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}
