// scribble MIB: a process for copy-on-write snapshots. It maps MIB MiB of
// private memory and fills it with words it can recompute (word i of the
// region holds i * 2654435761 + 7), and MIB/8 MiB more, made
// MADV_WIPEONFORK, and as much made MADV_DONTFORK, likewise with other
// constants. It prints the three addresses ("main 0x... wipe 0x...
// dontfork 0x...") and waits. On SIGUSR1 it overwrites them all with 0xff
// bytes and prints "scribbled", then waits again.
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_usr1(int sig) { (void)sig; go = 1; }

static uint64_t *region(size_t bytes, uint64_t k, int advice) {
	uint64_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(1); }
	if (advice && madvise(p, bytes, advice) != 0) { perror("madvise"); exit(1); }
	for (size_t i = 0; i < bytes / 8; i++) p[i] = i * k + 7;
	return p;
}

int main(int argc, char **argv) {
	size_t bytes = (size_t)atoi(argv[1]) << 20;
	uint64_t *main_ = region(bytes, 2654435761u, 0);
	uint64_t *wipe = region(bytes / 8, 40503u, MADV_WIPEONFORK);
	uint64_t *dontfork = region(bytes / 8, 69069u, MADV_DONTFORK);
	signal(SIGUSR1, on_usr1);
	printf("main %p wipe %p dontfork %p\n", (void *)main_, (void *)wipe, (void *)dontfork);
	fflush(stdout);
	sigset_t none;
	sigemptyset(&none);
	for (;;) {
		while (!go) pause();
		go = 0;
		memset(main_, 0xff, bytes);
		memset(wipe, 0xff, bytes / 8);
		memset(dontfork, 0xff, bytes / 8);
		printf("scribbled\n");
		fflush(stdout);
	}
}
