// forest: process trees for the ckptfs integration tests.
//
//	forest SCENARIO
//	forest fusewait PATH
//
// Each scenario builds a tree of processes (and threads), waits until every
// member has finished setting itself up, then the root prints one line to
// standard output:
//
//	READY <root pid> key=pid ...
//
// and every process waits until it is killed. Pids are printed as the test
// sees them (the outermost number of /proc/self/status NSpid), also for
// processes inside new pid namespaces. The root makes itself a child
// subreaper so orphans stay inside its subtree.
//
// The tree is self-verifying in the sense that the root only reports READY
// once every member has counted itself in a shared counter; a member that
// fails exits with a message on stderr and the root never reports READY.
//
// Only async-signal-safe work happens between a raw clone() and the next
// fork(): the children of a raw clone(CLONE_NEWPID) keep glibc's idea of the
// parent's thread id, so they fork and pause but create no threads and use
// no stdio.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXSLOTS 64
#define READY_TIMEOUT_MS 15000
// Every process ends itself after this long, so nothing outlives for long a
// test binary that was killed before its cleanup ran (go test -timeout).
// A test uses a workload for seconds.
#define LIFETIME_S 180

// shared lives in a MAP_SHARED page, inherited by every process of the tree.
struct shared {
	int ready;            // members that finished their setup
	int pids[MAXSLOTS];   // outer pids recorded by members, by slot
};
static struct shared *sh;

// extra collects the root's " key=pid" words for the READY line; the line is
// printed only after the last fork, so no child inherits buffered output.
static char extra[256];

static void say(const char *fmt, ...)
{
	size_t len = strlen(extra);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(extra + len, sizeof extra - len, fmt, ap);
	va_end(ap);
}

enum {
	SLOT_ROOT,
	SLOT_A, SLOT_B, SLOT_C, SLOT_D, // pidns: namespace inits
	SLOT_INIT,                      // container: the namespace init
	SLOT_VFORKED,                   // vfork: the child that has not exec'd
};

static void die(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if (n > (int)sizeof buf - 2)
		n = sizeof buf - 2;
	buf[n++] = '\n';
	// write(2) only: safe in any process of the forest.
	(void)!write(2, "forest: ", 8);
	(void)!write(2, buf, n);
	_exit(1);
}

// outer_pid returns this process's pid in the namespace of the /proc that
// is mounted (the test's): the first number of NSpid.
static int outer_pid(void)
{
	char buf[4096];
	int fd, n;
	char *p;

	fd = open("/proc/self/status", O_RDONLY);
	if (fd < 0)
		die("open /proc/self/status: %s", strerror(errno));
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		die("read /proc/self/status");
	buf[n] = 0;
	p = strstr(buf, "\nNSpid:");
	if (!p)
		die("no NSpid in /proc/self/status");
	return atoi(p + 7);
}

static void name(const char *s)
{
	prctl(PR_SET_NAME, s, 0, 0, 0);
}

static void record(int slot)
{
	sh->pids[slot] = outer_pid();
}

// quiet points standard output and error at /dev/null: a tree at rest
// holds no pipe to the test, which a checkpoint would refuse as leading
// outside the tree.
static pid_t forest_root; // the process that prints READY, quieted after

static void quiet(void)
{
	int fd;

	if (getpid() == forest_root)
		return; // a thread of the root: its READY line is still to come
	fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
}

static void ready(void)
{
	quiet();
	__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// wait_count waits until n members have called ready().
static void wait_count(int n)
{
	long deadline = now_ms() + READY_TIMEOUT_MS;
	while (__atomic_load_n(&sh->ready, __ATOMIC_SEQ_CST) < n) {
		if (now_ms() > deadline)
			die("timed out: %d of %d members ready", sh->ready, n);
		usleep(1000);
	}
}

// hang waits to be killed.
static void hang(void)
{
	alarm(LIFETIME_S);
	for (;;)
		pause();
}

static pid_t xfork(void)
{
	pid_t p = fork();
	if (p < 0)
		die("fork: %s", strerror(errno));
	return p;
}

// clone_newpid forks into a new pid namespace, where the child is pid 1.
// See the note at the top on what the child may do.
static pid_t clone_newpid(void)
{
	pid_t p = syscall(SYS_clone, CLONE_NEWPID | SIGCHLD, NULL, NULL, NULL, NULL);
	if (p < 0)
		die("clone(CLONE_NEWPID): %s", strerror(errno));
	return p;
}

static void xsetsid(void)
{
	if (setsid() < 0)
		die("setsid: %s", strerror(errno));
}

static void xsetpgid_self(void)
{
	if (setpgid(0, 0) < 0)
		die("setpgid: %s", strerror(errno));
}

// member: a leaf process that names itself, counts itself in and waits.
static void member(const char *nm)
{
	name(nm);
	ready();
	hang();
}

static void xwaitpid(pid_t p)
{
	int st;
	while (waitpid(p, &st, 0) < 0) {
		if (errno != EINTR)
			die("waitpid %d: %s", p, strerror(errno));
	}
}

// wait_zombie waits until child p has exited, leaving it a zombie.
static void wait_zombie(pid_t p)
{
	siginfo_t si;
	while (waitid(P_PID, p, &si, WEXITED | WNOWAIT) < 0) {
		if (errno != EINTR)
			die("waitid %d: %s", p, strerror(errno));
	}
}

/* ---- threads ---- */

struct thread_arg {
	char name[16];
	int forks; // fork a member process from this thread
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	pthread_setname_np(pthread_self(), a->name);
	if (a->forks && xfork() == 0)
		member("t-grand");
	ready();
	for (;;)
		pause();
	return NULL;
}

static void spawn_thread(const char *nm, int forks)
{
	pthread_t th;
	struct thread_arg *a = calloc(1, sizeof *a);
	if (!a)
		die("calloc");
	snprintf(a->name, sizeof a->name, "%s", nm);
	a->forks = forks;
	int err = pthread_create(&th, NULL, thread_main, a);
	if (err)
		die("pthread_create: %s", strerror(err));
}

/* ---- scenarios ----
 * Each returns the number of ready() calls the root waits for, after it
 * has built the tree. The root itself never calls ready(). */

// simple: root -> child -> grandchild.
static int sc_simple(void)
{
	if (xfork() == 0) {
		if (xfork() == 0)
			member("f-grand");
		member("f-child");
	}
	return 2;
}

// sessions: a child that calls setsid (after forking one child that stays
// in the old session) and has children; a grandchild that moves to its own
// process group; a child that leads a new group with a member in it.
static int sc_sessions(void)
{
	if (xfork() == 0) {
		name("s-leader");
		if (xfork() == 0)
			member("s-early"); // forked before setsid: the old session
		xsetsid();
		if (xfork() == 0) {
			name("s-child1");
			if (xfork() == 0) {
				xsetpgid_self(); // same session, own group
				member("s-grand1");
			}
			member("s-child1");
		}
		if (xfork() == 0) {
			name("s-child2");
			xsetpgid_self();
			if (xfork() == 0)
				member("s-grand2"); // in s-child2's group
			member("s-child2");
		}
		member("s-leader");
	}
	return 6;
}

// deadpgrp: a process group whose leader has exited (and been reaped)
// while its members live on, reparented to the root.
static int sc_deadpgrp(void)
{
	pid_t l = xfork();
	if (l == 0) {
		name("g-leader");
		xsetpgid_self();
		if (xfork() == 0)
			member("g-member1");
		if (xfork() == 0) {
			name("g-member2");
			if (xfork() == 0)
				member("g-member3");
			member("g-member2");
		}
		wait_count(3);
		_exit(0);
	}
	wait_count(3);
	xwaitpid(l);
	say(" deadleader=%d", l);
	return 3;
}

// deadsession: a session whose leader has exited (and been reaped); its
// members, one of them with a group of its own, live on under the root.
static int sc_deadsession(void)
{
	pid_t s = xfork();
	if (s == 0) {
		name("d-leader");
		xsetsid();
		if (xfork() == 0) {
			name("d-member1");
			if (xfork() == 0)
				member("d-member1a");
			member("d-member1");
		}
		if (xfork() == 0) {
			xsetpgid_self();
			member("d-member2");
		}
		wait_count(3);
		_exit(0);
	}
	wait_count(3);
	xwaitpid(s);
	say(" deadleader=%d", s);
	return 3;
}

// threads: the root has three threads; a child has two, and one of the
// child's non-leader threads forks a grandchild.
static int sc_threads(void)
{
	name("t-root");
	spawn_thread("t-worker1", 0);
	spawn_thread("t-worker2", 0);
	spawn_thread("t-worker3", 0);
	if (xfork() == 0) {
		name("t-child");
		spawn_thread("t-cworker1", 1);
		spawn_thread("t-cworker2", 0);
		member("t-child");
	}
	return 3 + 1 + 2 + 1;
}

// zombie: a process with two unreaped children, one that exited with
// status 7 and one killed by SIGUSR1.
static int sc_zombie(void)
{
	if (xfork() == 0) {
		name("z-parent");
		pid_t z1 = xfork();
		if (z1 == 0) {
			name("z-exit7");
			_exit(7);
		}
		pid_t z2 = xfork();
		if (z2 == 0) {
			name("z-signal");
			signal(SIGUSR1, SIG_DFL);
			raise(SIGUSR1);
			_exit(99);
		}
		wait_zombie(z1);
		wait_zombie(z2);
		member("z-parent");
	}
	return 1;
}

// pidns: namespaces nested three deep below the root, with two sibling
// namespaces at the first level:
//
//	root ─ n-plain
//	     ─ A (init of ns1) ─ n-sessA (setsid) ─ n-sessA-kid
//	                       ─ C (init of ns2) ─ n-kidC
//	                                         ─ D (init of ns3) ─ n-kidD ─ n-grandD (own group)
//	     ─ B (init of ns1') ─ n-kidB (own group) ─ n-grandB
static int sc_pidns(void)
{
	if (xfork() == 0)
		member("n-plain");
	if (clone_newpid() == 0) {
		name("n-initA");
		record(SLOT_A);
		if (xfork() == 0) {
			name("n-sessA");
			xsetsid();
			if (xfork() == 0)
				member("n-sessA-kid");
			member("n-sessA");
		}
		if (clone_newpid() == 0) {
			name("n-initC");
			record(SLOT_C);
			if (xfork() == 0)
				member("n-kidC");
			if (clone_newpid() == 0) {
				name("n-initD");
				record(SLOT_D);
				if (xfork() == 0) {
					name("n-kidD");
					if (xfork() == 0) {
						xsetpgid_self();
						member("n-grandD");
					}
					member("n-kidD");
				}
				member("n-initD");
			}
			member("n-initC");
		}
		member("n-initA");
	}
	if (clone_newpid() == 0) {
		name("n-initB");
		record(SLOT_B);
		if (xfork() == 0) {
			name("n-kidB");
			xsetpgid_self();
			if (xfork() == 0)
				member("n-grandB");
			member("n-kidB");
		}
		member("n-initB");
	}
	wait_count(12);
	say(" initA=%d initB=%d initC=%d initD=%d",
	       sh->pids[SLOT_A], sh->pids[SLOT_B], sh->pids[SLOT_C], sh->pids[SLOT_D]);
	return 12;
}

// container: the root is a launcher; its child is the init of a new pid
// namespace that calls setsid, so every pid of the init's tree lies inside.
// READY names the init (the tree to checkpoint) first; launcher= is the root.
//
//	init (setsid) ─ c-kid1 ─ c-grand1
//	              ─ c-kid2 (own group, 2 threads) ─ c-grand2
//	              ─ c-zombie (exited with status 3, not reaped)
static int sc_container(int *root)
{
	pid_t init = clone_newpid();
	if (init == 0) {
		name("c-init");
		xsetsid();
		if (xfork() == 0) {
			name("c-kid1");
			if (xfork() == 0)
				member("c-grand1");
			member("c-kid1");
		}
		if (xfork() == 0) {
			// A plain fork: glibc is sane again, threads are fine.
			name("c-kid2");
			xsetpgid_self();
			spawn_thread("c-thread1", 0);
			spawn_thread("c-thread2", 0);
			if (xfork() == 0)
				member("c-grand2");
			member("c-kid2");
		}
		pid_t z = xfork();
		if (z == 0) {
			name("c-zombie");
			_exit(3);
		}
		wait_zombie(z);
		member("c-init");
	}
	*root = init;
	return 7;
}

// churn: a stable child, while the root keeps forking children that exit at
// once (and reaps them): the tree changes under a checkpoint.
static int sc_churn(void)
{
	if (xfork() == 0)
		member("ch-stable");
	return 1;
}

// vfork: a child ("vf-parent") that calls vfork; the vfork child
// ("vf-child") neither execs nor exits but sleeps on, sharing its parent's
// memory, while the parent waits in vfork, uninterruptibly. The child does
// nothing but raw system calls and stores to the shared page (it runs on
// its parent's stack). READY names both: parent= and child=.
static int sc_vfork(void)
{
	pid_t p = xfork();
	if (p == 0) {
		name("vf-parent");
		if (vfork() == 0) {
			struct timespec ts = {3600, 0};

			sh->pids[SLOT_VFORKED] = syscall(SYS_getpid);
			__atomic_add_fetch(&sh->ready, 1, __ATOMIC_SEQ_CST);
			for (;;)
				syscall(SYS_nanosleep, &ts, NULL);
		}
		hang(); // never reached while the child lives
	}
	wait_count(1);
	say(" parent=%d child=%d", p, sh->pids[SLOT_VFORKED]);
	return 1;
}

// fusewait PATH: the root alone. After READY it opens PATH and reads it,
// once; then it waits to be killed. The tests point PATH into a mount whose
// daemon they stopped: the root then waits in FUSE, interruptibly (state S)
// until a signal comes, then, as the kernel waits for the daemon's answer
// to its interrupt, killably (state D), where no freeze can stop it. SIGUSR1
// has a handler that does nothing: sending it moves the wait to D.
static void on_usr1(int sig)
{
	(void)sig;
}

static int sc_fusewait(void)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0)
		die("sigaction: %s", strerror(errno));
	return 0;
}

static void fusewait(const char *path)
{
	char buf[64];

	alarm(LIFETIME_S);
	int fd = open(path, O_RDONLY);
	if (fd >= 0) {
		(void)!read(fd, buf, sizeof buf);
		close(fd);
	}
	hang();
}

static void churn_forever(void)
{
	alarm(LIFETIME_S);
	for (;;) {
		pid_t p = fork();
		if (p == 0)
			_exit(0);
		if (p > 0)
			xwaitpid(p);
		usleep(2000);
	}
}

int main(int argc, char **argv)
{
	// The shell the tests run from may leak descriptors: keep 0, 1, 2 only.
	if (syscall(SYS_close_range, 3, ~0U, 0) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	if (argc != 2 && !(argc == 3 && !strcmp(argv[1], "fusewait")))
		die("usage: forest simple|sessions|deadpgrp|deadsession|threads|zombie|pidns|container|churn|vfork|fusewait PATH");
	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		die("mmap: %s", strerror(errno));
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		die("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
	name("forest");

	const char *sc = argv[1];
	int root = getpid();

	forest_root = root;
	int n;
	if (!strcmp(sc, "container")) {
		// The tree to checkpoint is the init; the launcher is named
		// in launcher=.
		n = sc_container(&root);
		say(" launcher=%d", getpid());
	} else if (!strcmp(sc, "simple"))
		n = sc_simple();
	else if (!strcmp(sc, "sessions"))
		n = sc_sessions();
	else if (!strcmp(sc, "deadpgrp"))
		n = sc_deadpgrp();
	else if (!strcmp(sc, "deadsession"))
		n = sc_deadsession();
	else if (!strcmp(sc, "threads"))
		n = sc_threads();
	else if (!strcmp(sc, "zombie"))
		n = sc_zombie();
	else if (!strcmp(sc, "pidns"))
		n = sc_pidns();
	else if (!strcmp(sc, "churn"))
		n = sc_churn();
	else if (!strcmp(sc, "fusewait"))
		n = sc_fusewait();
	else if (!strcmp(sc, "vfork"))
		n = sc_vfork();
	else
		die("unknown scenario %s", sc);
	wait_count(n);
	printf("READY %d%s\n", root, extra);
	fflush(stdout);
	forest_root = 0;
	quiet();
	if (!strcmp(sc, "churn"))
		churn_forever();
	if (!strcmp(sc, "fusewait"))
		fusewait(argv[2]);
	hang();
	return 0;
}
