// objects: a process holding one kernel object that ckptfs refuses to
// checkpoint, for the tests of those refusals (tests/unsupported_test.go).
//
//	objects KIND
//
// creates one object of KIND and prints
//
//	READY <pid> fd=<n>
//
// naming the descriptor that holds it, then sleeps in pause() until killed.
// KIND is io_uring, signalfd, timerfd, userfaultfd, pidfd, fanotify,
// perf_event, tcp (listening on 127.0.0.1, an ephemeral port) or udp (bound
// likewise). KIND traced forks a child that sleeps too and prints
//
//	READY <pid> child=<child pid>
//
// for a tracer outside the tree to attach to:
//
//	objects tracer PID
//
// PTRACE_SEIZEs PID, prints "READY <own pid>", and lets PID run on (every
// stop it reports is continued, a signal handed back) until PID is gone.
//
// Where the kernel does not let this process create the object (a sysctl,
// a missing capability, an old kernel), it prints "SKIP <why>" and exits 0.
// Any other failure is reported on stderr with exit status 1.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/ptrace.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "objects: %s: %s\n", what, strerror(errno));
	exit(1);
}

// unavailable says whether errno means the kernel refuses this object to us
// (rather than a bug of this program).
static int unavailable(void)
{
	return errno == ENOSYS || errno == EPERM || errno == EACCES || errno == EOPNOTSUPP ||
	       errno == EINVAL || errno == ENOENT;
}

static int skip_or_die(const char *what)
{
	if (!unavailable())
		die(what);
	printf("SKIP %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(0);
}

static void ready(const char *extra)
{
	printf("READY %d %s\n", (int)getpid(), extra);
	fflush(stdout);
	for (;;)
		pause();
}

static int inet_socket(int type)
{
	int fd = socket(AF_INET, type, 0);
	if (fd < 0)
		die("socket");
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
		die("bind 127.0.0.1:0");
	if (type == SOCK_STREAM && listen(fd, 4) < 0)
		die("listen");
	return fd;
}

static int object(const char *kind)
{
	int fd;
	if (strcmp(kind, "io_uring") == 0) {
		struct io_uring_params p;
		memset(&p, 0, sizeof p);
		fd = (int)syscall(SYS_io_uring_setup, 4, &p);
		if (fd < 0)
			skip_or_die("io_uring_setup (see kernel.io_uring_disabled)");
		return fd;
	}
	if (strcmp(kind, "signalfd") == 0) {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
			die("sigprocmask");
		if ((fd = signalfd(-1, &set, 0)) < 0)
			die("signalfd");
		return fd;
	}
	if (strcmp(kind, "timerfd") == 0) {
		if ((fd = timerfd_create(CLOCK_MONOTONIC, 0)) < 0)
			die("timerfd_create");
		struct itimerspec its = {.it_value = {.tv_sec = 1000}};
		if (timerfd_settime(fd, 0, &its, NULL) < 0)
			die("timerfd_settime");
		return fd;
	}
	if (strcmp(kind, "userfaultfd") == 0) {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		if (fd < 0 && errno == EPERM)
			fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
		if (fd < 0)
			skip_or_die("userfaultfd (see vm.unprivileged_userfaultfd)");
		return fd;
	}
	if (strcmp(kind, "pidfd") == 0) {
		fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
		if (fd < 0)
			skip_or_die("pidfd_open");
		return fd;
	}
	if (strcmp(kind, "fanotify") == 0) {
		fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDONLY);
		if (fd < 0)
			skip_or_die("fanotify_init (needs CAP_SYS_ADMIN and CONFIG_FANOTIFY)");
		return fd;
	}
	if (strcmp(kind, "perf_event") == 0) {
		struct perf_event_attr attr;
		memset(&attr, 0, sizeof attr);
		attr.size = sizeof attr;
		attr.type = PERF_TYPE_SOFTWARE;
		attr.config = PERF_COUNT_SW_TASK_CLOCK;
		attr.exclude_kernel = 1;
		attr.exclude_hv = 1;
		fd = (int)syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
		if (fd < 0)
			skip_or_die("perf_event_open (see kernel.perf_event_paranoid)");
		return fd;
	}
	if (strcmp(kind, "tcp") == 0)
		return inet_socket(SOCK_STREAM);
	if (strcmp(kind, "udp") == 0)
		return inet_socket(SOCK_DGRAM);
	fprintf(stderr, "objects: unknown kind %s\n", kind);
	exit(2);
}

// trace seizes pid and keeps it running until it is gone.
static void trace(pid_t pid)
{
	if (ptrace(PTRACE_SEIZE, pid, 0, 0) < 0)
		die("PTRACE_SEIZE");
	printf("READY %d\n", (int)getpid());
	fflush(stdout);
	for (;;) {
		int st;
		if (waitpid(pid, &st, __WALL) < 0) {
			if (errno == EINTR)
				continue;
			exit(errno == ECHILD ? 0 : 1);
		}
		if (WIFEXITED(st) || WIFSIGNALED(st))
			exit(0);
		// A signal-delivery stop hands its signal on; an event stop
		// (st>>16 set) or a group stop continues without one.
		int sig = st >> 16 ? 0 : WSTOPSIG(st);
		ptrace(PTRACE_CONT, pid, 0, (void *)(long)sig);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "tracer") == 0) {
		trace((pid_t)atoi(argv[2]));
		return 1;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: objects KIND | objects traced | objects tracer PID\n");
		return 2;
	}
	char extra[64];
	if (strcmp(argv[1], "traced") == 0) {
		pid_t child = fork();
		if (child < 0)
			die("fork");
		if (child == 0)
			for (;;)
				pause();
		snprintf(extra, sizeof extra, "child=%d", (int)child);
	} else {
		snprintf(extra, sizeof extra, "fd=%d", object(argv[1]));
	}
	ready(extra);
	return 0;
}
