// The restart seed: ckptfs re-executes itself with CKPTFS_SEED=1 in its
// environment, and this constructor takes over before the Go runtime starts,
// while the process is still single-threaded (runc's nsenter pattern). Go
// cannot fork without exec; this process never needs to: the daemon seizes
// it with ptrace (PTRACE_O_EXITKILL, so a daemon that dies takes the
// half-built forest with it) and creates every task of the restored forest
// by making it, and the tasks it made, call clone3, setsid, setpgid and exit
// (internal/inject).
//
// When the daemon lets it go, the seed returns from raise() and guards the
// release of the forest (guard, below); then it is what the restore made
// of it: the parent of the restored root and the child subreaper of the
// tree. It reaps what comes to it and exits when it has no children left.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// The control socket (SOCK_SEQPACKET) from the daemon; its messages:
//   'P' pad[3] int32 pids[]   processes to kill if the daemon dies first;
//                             answered 'A', or 'E' int32 pid for one gone
//   'C'                       commit: the forest is let go, it stays
//   'X'                       abort: kill them now
// End of file before 'C' means the daemon died: kill them.
#define CONTROL_FD 3
#define MAX_GUARDED (1 << 20)

static int *guarded;
static int nguarded;

static void kill_guarded(void)
{
	for (int i = 0; i < nguarded; i++)
		syscall(SYS_pidfd_send_signal, guarded[i], SIGKILL, NULL, 0);
}

static void reply(const void *msg, size_t len)
{
	while (send(CONTROL_FD, msg, len, MSG_NOSIGNAL) < 0 && errno == EINTR)
		;
}

// guard holds a pidfd of every process of the forest while the daemon lets
// its tasks go one by one: should the daemon die before it has let them all
// go (then only some would run), the seed kills them all. Pidfds, not pids:
// a process that dies and is reaped meanwhile must not take another's pid
// down with it.
static void guard(void)
{
	static char buf[1 << 16];

	for (;;) {
		ssize_t n = recv(CONTROL_FD, buf, sizeof(buf), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || buf[0] == 'X') {
			kill_guarded();
			break;
		}
		if (buf[0] == 'C')
			break;
		if (buf[0] != 'P' || n < 4 || (n - 4) % 4 != 0)
			continue;
		int count = (int)(n - 4) / 4;
		int *more = realloc(guarded, sizeof(int) * (size_t)(nguarded + count));

		if (more == NULL || nguarded + count > MAX_GUARDED) {
			kill_guarded();
			break;
		}
		guarded = more;
		char answer[8] = {'A'};
		size_t alen = 1;
		for (int i = 0; i < count; i++) {
			int32_t pid;

			memcpy(&pid, buf + 4 + 4 * i, 4);
			int fd = (int)syscall(SYS_pidfd_open, pid, 0);
			if (fd < 0) {
				answer[0] = 'E';
				memcpy(answer + 4, &pid, 4);
				alen = 8;
				continue;
			}
			guarded[nguarded++] = fd;
		}
		reply(answer, alen);
	}
	for (int i = 0; i < nguarded; i++)
		close(guarded[i]);
	free(guarded);
	close(CONTROL_FD);
}

static void __attribute__((constructor)) ckptfs_seed(void)
{
	const char *v = getenv("CKPTFS_SEED");
	const char *parent = getenv("CKPTFS_SEED_PARENT");

	if (v == NULL || v[0] != '1')
		return;
	// Keep only stdin, stdout, stderr and the control socket: whatever
	// else leaked into the daemon must not reach the restored tasks.
	syscall(SYS_close_range, CONTROL_FD + 1, ~0U, 0);
	// Until the daemon lets it go, the daemon's death must take the seed
	// along: the daemon clears this just before (and, once it is seized,
	// PTRACE_O_EXITKILL would kill it too). A daemon that died before
	// this line is no longer its parent.
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (parent == NULL || getppid() != atoi(parent))
		_exit(1);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	raise(SIGSTOP);
	guard();
	for (;;) {
		int status;

		if (waitpid(-1, &status, __WALL) < 0 && errno == ECHILD)
			_exit(0);
	}
}
