// refused: a process a checkpoint must refuse, for the status tests.
//
//	refused traced   a child, traced by this process (PTRACE_TRACEME),
//	                 sleeps; this process waits. The child's pid is
//	                 printed.
//	refused uring    this process holds an io_uring and sleeps; its own
//	                 pid is printed.
#include <linux/io_uring.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc == 2 && strcmp(argv[1], "traced") == 0) {
		pid_t child = fork();
		if (child == 0) {
			if (ptrace(PTRACE_TRACEME, 0, 0, 0) != 0) { perror("ptrace"); _exit(1); }
			for (;;) pause();
		}
		printf("%d\n", child);
		fflush(stdout);
		for (;;) pause();
	}
	if (argc == 2 && strcmp(argv[1], "uring") == 0) {
		struct io_uring_params p;
		memset(&p, 0, sizeof p);
		if (syscall(SYS_io_uring_setup, 8, &p) < 0) { perror("io_uring_setup"); return 1; }
		printf("%d\n", getpid());
		fflush(stdout);
		for (;;) pause();
	}
	fprintf(stderr, "usage: refused traced|uring\n");
	return 2;
}
