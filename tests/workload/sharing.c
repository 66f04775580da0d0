// sharing: a self-verifying workload for shared descriptor tables and fs
// structs (clone with CLONE_FILES and CLONE_FS).
//
//	sharing REPORT
//
// It works in REPORT's directory (umask 022), where it makes a file
// "probe" and a directory "sub", opens REPORT.log (write-only, append),
// then makes three processes by raw clone(2):
//
//	parent      the process started
//	child       cloned by parent with CLONE_FILES|CLONE_FS: one descriptor
//	            table and one fs struct with parent
//	grandchild  cloned by child with CLONE_FILES only: the same table, an
//	            fs struct of its own
//	other       forked by parent: shares nothing
//
// Each of them appends a line to REPORT (opened by path each time) and to
// REPORT.log (through the inherited descriptor) about every 20 ms:
//
//	ROLE pid=P n=N fd100=F cwd=C umask=U log=L
//
// fd100 says what descriptor 100 is (probe, none, or other), cwd where the
// process is (top, sub, or ?), umask its umask, log whether the log
// descriptor is still REPORT.log (ok or bad). On SIGUSR1 the child opens
// probe as descriptor 100, enters sub and sets umask 077, once: afterwards
// the parent must see fd100=probe cwd=sub umask=077, the grandchild
// fd100=probe cwd=top umask=022, and other fd100=none cwd=top umask=022.
// A process that was restarted instead of resumed writes a second "start"
// line and counts from 1 again.
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *report;
static char top[3072], sub[4096], probe[4096], logpath[4096];
static int logfd;
static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static void say(const char *line)
{
	int fd = open(report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		_exit(3);
	if (write(fd, line, strlen(line)) < 0)
		_exit(4);
	close(fd);
	if (write(logfd, line, strlen(line)) < 0)
		_exit(5);
}

// same reports whether fd is the file at path.
static int same(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// clone_like_fork clones the calling process with flags, without a new
// stack (the child runs on a copy of it, as after fork).
static pid_t clone_like_fork(unsigned long flags)
{
	return syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

static void run(const char *role)
{
	char line[512], cwd[4096];
	unsigned long n = 0;
	struct timespec tick = {0, 20000000};
	int acted = 0;

	snprintf(line, sizeof line, "start %s pid=%d\n", role, getpid());
	say(line);
	for (;;) {
		if (usr1 && !acted && strcmp(role, "child") == 0) {
			int fd = open(probe, O_RDONLY | O_CLOEXEC);

			if (fd < 0 || dup2(fd, 100) < 0 || close(fd) < 0 || chdir("sub") < 0)
				_exit(6);
			umask(077);
			acted = 1;
		}
		n++;
		mode_t u = umask(0);
		const char *fd100 = "other", *where = "?";

		umask(u);
		if (fcntl(100, F_GETFD) < 0)
			fd100 = "none";
		else if (same(100, probe))
			fd100 = "probe";
		if (getcwd(cwd, sizeof cwd) != NULL)
			where = strcmp(cwd, top) == 0 ? "top" : strcmp(cwd, sub) == 0 ? "sub" : "?";
		snprintf(line, sizeof line, "%s pid=%d n=%lu fd100=%s cwd=%s umask=%03o log=%s\n", role, getpid(), n,
			 fd100, where, (unsigned)u, same(logfd, logpath) ? "ok" : "bad");
		say(line);
		nanosleep(&tick, NULL);
	}
}

int main(int argc, char **argv)
{
	char dir[4096];
	struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};
	pid_t pid;

	if (argc != 2) {
		fprintf(stderr, "usage: sharing REPORT\n");
		return 2;
	}
	report = argv[1];
	snprintf(dir, sizeof dir, "%s", report);
	if (chdir(dirname(dir)) < 0 || getcwd(top, sizeof top) == NULL)
		return 7;
	umask(022);
	snprintf(sub, sizeof sub, "%s/sub", top);
	snprintf(probe, sizeof probe, "%s/probe", top);
	snprintf(logpath, sizeof logpath, "%s.log", report);
	int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0 || close(fd) < 0 || (mkdir(sub, 0755) < 0 && access(sub, X_OK) < 0))
		return 8;
	logfd = open(logpath, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (logfd < 0 || sigaction(SIGUSR1, &sa, NULL) < 0)
		return 9;

	pid = clone_like_fork(CLONE_FILES | CLONE_FS);
	if (pid < 0)
		return 10;
	if (pid == 0) {
		pid = clone_like_fork(CLONE_FILES);
		if (pid < 0)
			_exit(11);
		run(pid == 0 ? "grandchild" : "child");
	}
	pid = fork();
	if (pid < 0)
		return 12;
	run(pid == 0 ? "other" : "parent");
	return 0;
}
