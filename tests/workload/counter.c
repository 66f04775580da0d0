// counter: a self-verifying workload for restart.
//
//	counter REPORT MIB
//
// It fills MIB MiB of heap with words it can recompute, then forever: bumps
// a counter, rewrites a word of the buffer (so that pages change between a
// checkpoint and a restore), holds values in AVX registers through a busy
// loop, and about every 20 ms appends a line to REPORT:
//
//	pid=P n=N usr1=K join=J alrm=A pend=S sig=ok proc=ok attr=ok file=ok mem=ok fpu=ok
//
// pend=1 once a SIGUSR2 (blocked) is pending. An interval timer rings every 10 ms (alrm=A counts the SIGALRMs). A
// second thread waits for the first SIGUSR1 and exits; the main thread
// then joins it (join=ok; "wait" until then, "bad" if the join does not
// return: pthread_join needs the kernel to clear the thread's tid word).
// It also keeps signal state to check: a SIGUSR1 handler that runs on an
// alternate stack and counts (usr1=K), and SIGUSR2 blocked; "sig=ok" says
// both still hold. It works in REPORT's directory with umask 027, nice 5
// and as a child subreaper: "proc=ok" says these hold. It lowers some
// resource limits (open files soft and hard, core size hard, stack soft),
// runs its main thread under SCHED_BATCH with SIGWINCH as parent-death
// signal, and starts two more threads that block every signal: an idler
// under SCHED_IDLE with reset-on-fork at nice 7, and a checker under
// SCHED_FIFO priority 3 (SCHED_BATCH where the kernel refuses it) with
// SIGURG as parent-death signal, which checks its own attributes every
// 2 ms. "attr=ok" says the limits and every thread's attributes hold,
// "wait" that the checker has not checked since the last line, "bad"
// that something was lost (both parent-death signals are ignored by
// default, so a parent that dies does no harm). It keeps REPORT.log open (write-only, close-on-exec) and
// writes every line there too: "file=ok" says the descriptor still has its
// number, flags, file and offset. REPORT itself is opened by path for every
// line, so that the test can read it whatever happens to the process. A process that was restarted instead of resumed would write a
// second "start" line and count from 1 again; one whose memory or registers
// were lost writes "bad". The test reads the file.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <libgen.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *report;
static uint64_t *buf;
static size_t words;
static uint64_t expected_sum; // sum of buf, kept up to date incrementally
static volatile sig_atomic_t usr1, usr1_off_stack, alrm;

static void on_alrm(int sig)
{
	(void)sig;
	alrm++;
}
static char altstack[64 << 10];
static int logfd;
static off_t logged;
static ino_t log_ino;

static char cwd[4096];
static pthread_t waiter;
static const char *join_state = "wait";

static void *wait_usr1(void *arg)
{
	(void)arg;
	while (usr1 == 0)
		usleep(1000);
	return NULL;
}

// The attributes set up in main and by the idler and checker threads.
static struct {
	int res;
	struct rlimit want;
} limits[] = {
	{RLIMIT_NOFILE, {200, 400}},
	{RLIMIT_CORE, {0, 1 << 20}},
	{RLIMIT_STACK, {4 << 20, RLIM_INFINITY}},
};
static volatile pid_t idler_tid;
static int checker_policy = SCHED_FIFO, checker_prio = 3;
static volatile int checker_ok;
static volatile unsigned checker_rounds;

// block_all keeps the calling thread out of signal delivery: SIGUSR1's
// handler wants the main thread's alternate stack.
static void block_all(void)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static void *idle_forever(void *arg)
{
	(void)arg;
	block_all();
	setpriority(PRIO_PROCESS, 0, 7); // this thread's nice only
	struct sched_param none = {0};
	if (sched_setscheduler(0, SCHED_IDLE | SCHED_RESET_ON_FORK, &none) == 0)
		idler_tid = syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

// check_attrs checks the checker's own policy, priority and parent-death
// signal, every 2 ms.
static void *check_attrs(void *arg)
{
	struct sched_param sp = {.sched_priority = checker_prio};

	(void)arg;
	block_all();
	if (sched_setscheduler(0, checker_policy, &sp) < 0) {
		sp.sched_priority = checker_prio = 0;
		checker_policy = SCHED_BATCH;
		if (sched_setscheduler(0, checker_policy, &sp) < 0)
			return NULL;
	}
	prctl(PR_SET_PDEATHSIG, SIGURG);
	for (;;) {
		int sig = -1;

		errno = 0;
		checker_ok = sched_getscheduler(0) == checker_policy && sched_getparam(0, &sp) == 0 &&
			     sp.sched_priority == checker_prio && prctl(PR_GET_PDEATHSIG, &sig) == 0 && sig == SIGURG;
		checker_rounds++;
		usleep(2000);
	}
}

// attr_state reports whether the resource limits and every thread's
// scheduling attributes and parent-death signal hold (see the top).
static const char *attr_state(void)
{
	static unsigned seen;
	unsigned rounds = checker_rounds;
	struct sched_param sp;
	struct rlimit rl;
	int sig = -1, ok = 1;

	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
		if (getrlimit(limits[i].res, &rl) < 0 || rl.rlim_cur != limits[i].want.rlim_cur ||
		    rl.rlim_max != limits[i].want.rlim_max)
			ok = 0;
	if (prctl(PR_GET_PDEATHSIG, &sig) < 0 || sig != SIGWINCH)
		ok = 0;
	if (sched_getscheduler(0) != SCHED_BATCH || sched_getparam(0, &sp) < 0 || sp.sched_priority != 0)
		ok = 0;
	errno = 0;
	if (idler_tid == 0 || sched_getscheduler(idler_tid) != (SCHED_IDLE | SCHED_RESET_ON_FORK) ||
	    getpriority(PRIO_PROCESS, idler_tid) != 7 || errno != 0)
		ok = 0;
	if (!ok || (rounds != seen && !checker_ok))
		return "bad";
	if (rounds == seen)
		return "wait";
	seen = rounds;
	return "ok";
}

// try_join joins the waiter once SIGUSR1 has come, within a second.
static void try_join(void)
{
	struct timespec until;

	if (usr1 == 0 || join_state[0] != 'w')
		return;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 1;
	join_state = pthread_timedjoin_np(waiter, NULL, &until) == 0 ? "ok" : "bad";
}

// proc_ok reports whether the process attributes set up in main hold.
static int proc_ok(void)
{
	char now[4096];
	int sub = 0;
	mode_t u = umask(0);

	umask(u);
	if (getcwd(now, sizeof now) == NULL || strcmp(now, cwd) != 0 || u != 027)
		return 0;
	errno = 0;
	if (getpriority(PRIO_PROCESS, 0) != 5 || errno != 0)
		return 0;
	return prctl(PR_GET_CHILD_SUBREAPER, &sub) == 0 && sub == 1;
}

// file_ok reports whether the log descriptor is still as it was opened,
// at the offset of everything written to it.
static int file_ok(void)
{
	struct stat st;
	int fl = fcntl(logfd, F_GETFL), fd = fcntl(logfd, F_GETFD);

	if (fl < 0 || (fl & O_ACCMODE) != O_WRONLY || fd < 0 || !(fd & FD_CLOEXEC))
		return 0;
	if (fstat(logfd, &st) < 0 || st.st_ino != log_ino)
		return 0;
	return lseek(logfd, 0, SEEK_CUR) == logged;
}

static void on_usr1(int sig)
{
	char here;

	(void)sig;
	usr1++;
	if (&here < altstack || &here >= altstack + sizeof altstack)
		usr1_off_stack++;
}

// usr2_pending reports whether a (blocked) SIGUSR2 waits.
static int usr2_pending(void)
{
	sigset_t p;

	return sigpending(&p) == 0 && sigismember(&p, SIGUSR2);
}

// sig_ok reports whether the signal state set up in main still holds.
static int sig_ok(void)
{
	sigset_t now;
	struct sigaction sa;

	if (sigprocmask(SIG_BLOCK, NULL, &now) < 0 || !sigismember(&now, SIGUSR2))
		return 0;
	if (sigaction(SIGUSR1, NULL, &sa) < 0 || sa.sa_handler != on_usr1 || !(sa.sa_flags & SA_ONSTACK))
		return 0;
	return usr1_off_stack == 0;
}

static void say(const char *line)
{
	int fd = open(report, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0)
		_exit(3);
	if (write(fd, line, strlen(line)) < 0)
		_exit(4);
	close(fd);
}

static uint64_t word(size_t i) { return i * 0x9e3779b97f4a7c15ull; }

// fpu_ok loads 64 bytes derived from n into ymm12 and ymm13, spins, and
// checks that the registers still hold them. A checkpoint usually lands
// inside the spin, so the values live only in the registers at the cut.
static int fpu_ok(uint64_t n)
{
	uint64_t in[8], out[8];

	for (int i = 0; i < 8; i++)
		in[i] = (n + 1) * 0x0101010101010101ull * (i + 1);
	__asm__ volatile(
		"vmovdqu (%[in]), %%ymm12\n\t"
		"vmovdqu 32(%[in]), %%ymm13\n\t"
		"mov $200000, %%rcx\n"
		"1:\n\t"
		"pause\n\t"
		"dec %%rcx\n\t"
		"jnz 1b\n\t"
		"vmovdqu %%ymm12, (%[out])\n\t"
		"vmovdqu %%ymm13, 32(%[out])\n\t"
		"vzeroupper\n\t"
		:
		: [in] "r"(in), [out] "r"(out)
		: "rcx", "xmm12", "xmm13", "memory");
	return memcmp(in, out, sizeof in) == 0;
}

int main(int argc, char **argv)
{
	char line[256];
	uint64_t n = 0;
	struct timespec last = {0}, now;

	if (argc != 3) {
		fprintf(stderr, "usage: counter REPORT MIB\n");
		return 2;
	}
	report = argv[1];
	words = (size_t)atol(argv[2]) * (1 << 20) / sizeof *buf;
	if (words == 0)
		words = 512;
	buf = malloc(words * sizeof *buf);
	if (buf == NULL)
		return 5;
	for (size_t i = 0; i < words; i++) {
		buf[i] = word(i);
		expected_sum += buf[i];
	}
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK | SA_RESTART};
	sigset_t block;

	if (sigaltstack(&ss, NULL) < 0 || sigaction(SIGUSR1, &sa, NULL) < 0)
		return 6;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	char logpath[4096], dir[4096];
	struct stat st;

	snprintf(dir, sizeof dir, "%s", report);
	if (chdir(dirname(dir)) < 0 || getcwd(cwd, sizeof cwd) == NULL)
		return 8;
	umask(027);
	setpriority(PRIO_PROCESS, 0, 5);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
		if (setrlimit(limits[i].res, &limits[i].want) < 0)
			return 11;
	struct sched_param none = {0};
	pthread_t idler, checker;

	if (sched_setscheduler(0, SCHED_BATCH, &none) < 0 || prctl(PR_SET_PDEATHSIG, SIGWINCH) < 0)
		return 12;
	if (pthread_create(&idler, NULL, idle_forever, NULL) != 0 || pthread_create(&checker, NULL, check_attrs, NULL) != 0)
		return 13;

	snprintf(logpath, sizeof logpath, "%s.log", report);
	logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (logfd < 0 || fstat(logfd, &st) < 0)
		return 7;
	log_ino = st.st_ino;
	if (pthread_create(&waiter, NULL, wait_usr1, NULL) != 0)
		return 9;
	struct sigaction sa_alrm = {.sa_handler = on_alrm, .sa_flags = SA_RESTART};
	struct itimerval every = {.it_interval = {0, 10000}, .it_value = {0, 10000}};

	if (sigaction(SIGALRM, &sa_alrm, NULL) < 0 || setitimer(ITIMER_REAL, &every, NULL) < 0)
		return 10;
	snprintf(line, sizeof line, "start pid=%d\n", getpid());
	say(line);
	for (;;) {
		n++;
		size_t i = (n * 4099) % words;
		expected_sum -= buf[i];
		buf[i] = word(i) + n;
		expected_sum += buf[i];
		int fpu = fpu_ok(n);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (!fpu || (now.tv_sec - last.tv_sec) * 1000000000L + (now.tv_nsec - last.tv_nsec) > 20000000L) {
			uint64_t sum = 0;

			try_join();

			for (size_t j = 0; j < words; j++)
				sum += buf[j];
			snprintf(line, sizeof line, "pid=%d n=%llu usr1=%d join=%s alrm=%d pend=%d sig=%s proc=%s attr=%s file=%s mem=%s fpu=%s\n", getpid(),
				 (unsigned long long)n, (int)usr1, join_state, (int)alrm, usr2_pending(), sig_ok() ? "ok" : "bad", proc_ok() ? "ok" : "bad",
				 attr_state(), file_ok() ? "ok" : "bad",
				 sum == expected_sum ? "ok" : "bad", fpu ? "ok" : "bad");
			say(line);
			if (write(logfd, line, strlen(line)) == (ssize_t)strlen(line))
				logged += strlen(line);
			last = now;
		}
	}
}
