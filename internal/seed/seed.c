// The restart seed: ckptfs re-executes itself with CKPTFS_SEED=1 in its
// environment, and this constructor takes over before the Go runtime starts,
// while the process is still single-threaded (runc's nsenter pattern). Go
// cannot fork without exec; this process never needs to: the daemon seizes
// it with ptrace (PTRACE_O_EXITKILL, so a daemon that dies takes the
// half-built forest with it) and creates every task of the restored forest
// by making it, and the tasks it made, call clone3, setsid, setpgid and exit
// (internal/inject).
//
// When the daemon lets it go, the seed returns from raise() and is what the
// restore made of it: the parent of the restored root and the child
// subreaper of the tree. It reaps what comes to it and exits when it has no
// children left.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void __attribute__((constructor)) ckptfs_seed(void)
{
	const char *v = getenv("CKPTFS_SEED");

	if (v == NULL || v[0] != '1')
		return;
	// Keep only stdin, stdout and stderr: whatever else leaked into the
	// daemon must not reach the restored tasks.
	syscall(SYS_close_range, 3, ~0U, 0);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	raise(SIGSTOP);
	for (;;) {
		int status;

		if (waitpid(-1, &status, __WALL) < 0 && errno == ECHILD)
			_exit(0);
	}
}
